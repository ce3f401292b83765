"""Which topic a name refers to now: its topic id and partition count.

Deleting a topic and creating one of the same name gives a new topic id
(KIP-516, Kafka 2.8+). aiokafka 0.14 speaks Metadata up to v5, which has no
ids, so this module adds the one request it needs: Metadata v12 (Kafka 3.1+),
built from aiokafka's own protocol types and sent over a client's connection.
On a broker without v12 `describe_topics` returns `None` ids and readers fall
back to offset checks alone (docs/quarantine.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from aiokafka.errors import IncompatibleBrokerVersion, KafkaConnectionError
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    AbstractType,
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

UNKNOWN_TOPIC_OR_PARTITION = 3
_NULL_ID = bytes(16)


class _Uuid(AbstractType[bytes]):  # type: ignore[misc]
    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        raw = data.read(16)
        if len(raw) != 16:
            raise ValueError("Buffer underrun decoding a UUID")
        return raw


class _MetadataResponseV12(Response):  # type: ignore[misc]
    API_KEY = 3
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(
                ("node_id", Int32),
                ("host", CompactString("utf-8")),
                ("port", Int32),
                ("rack", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", CompactString("utf-8")),
                ("topic_id", _Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _MetadataRequestV12(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = 12
    RESPONSE_TYPE = _MetadataResponseV12
    SCHEMA = Schema(
        (
            "topics",
            CompactArray(("topic_id", _Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields)),
        ),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class _TopicMetadataRequest(Request[_MetadataRequestV12]):  # type: ignore[misc]
    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[_MetadataRequestV12]) -> _MetadataRequestV12:
        # Never auto-create: asking about a deleted topic must not bring it back.
        return request_struct_class([(_NULL_ID, t, {}) for t in self._topics], False, False, {})


@dataclass(frozen=True)
class TopicIdentity:
    # None when the broker does not report topic ids (older than Kafka 3.1).
    topic_id: uuid.UUID | None
    partitions: int


async def describe_topics(client: Any, topics: list[str]) -> dict[str, TopicIdentity | None]:
    """Each topic's identity now, or None for a topic the cluster does not have.

    `client` is an aiokafka client (a consumer's `_client`). Raises KafkaError
    or OSError when the broker cannot be asked.
    """
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker known")
    try:
        response = await client.send(node, _TopicMetadataRequest(topics))
    except (IncompatibleBrokerVersion, NotImplementedError):
        return await _describe_without_ids(client, topics)
    out: dict[str, TopicIdentity | None] = {}
    for error_code, name, topic_id, _internal, partitions, _ops, _tags in response.topics:
        if error_code == UNKNOWN_TOPIC_OR_PARTITION:
            out[name] = None
        elif error_code == 0:
            tid = None if topic_id == _NULL_ID else uuid.UUID(bytes=topic_id)
            out[name] = TopicIdentity(tid, len(partitions))
        # Other errors (a leader election under way) tell nothing: leave the topic out.
    return out


async def _describe_without_ids(client: Any, topics: list[str]) -> dict[str, TopicIdentity | None]:
    await client.force_metadata_update()
    out: dict[str, TopicIdentity | None] = {}
    for t in topics:
        parts = client.cluster.partitions_for_topic(t)
        out[t] = TopicIdentity(None, len(parts)) if parts else None
    return out
