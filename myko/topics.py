"""Topic names and creation.

One compacted topic per entity type, named `<prefix><proto full name>`, plus
Myko's own topics (the tx log, the command lease, the quarantine). Services create what they need at start, so a
fresh cluster needs no separate set-up step; creating an existing topic is fine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    for_code,
)

from myko.entities import EntityRegistry
from myko.errors import ConfigError, Unavailable
from myko.settings import KafkaSettings

log = logging.getLogger(__name__)

TX_LOG = "myko.tx"
# Room around the largest result for a record's key, headers and batch framing.
RECORD_OVERHEAD_BYTES = 64 * 1024
# Compaction only cleans closed segments: rolling hourly keeps what a reader
# replays at start close to the live entities, however long the topic has lived.
ENTITY_SEGMENT_MS = 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def entity_topics(kafka: KafkaSettings, entities: EntityRegistry) -> list[TopicSpec]:
    cfg = {
        "cleanup.policy": "compact",
        "min.insync.replicas": str(kafka.topic_min_insync_replicas),
        # Keep tombstones long enough for a slow reader to see the delete.
        "delete.retention.ms": str(24 * 3600 * 1000),
        "segment.ms": str(ENTITY_SEGMENT_MS),
        "max.message.bytes": str(max_record_bytes(kafka)),
    }
    return [TopicSpec(et.topic(kafka.topic_prefix), kafka.topic_partitions, cfg) for et in entities]


def max_record_bytes(kafka: KafkaSettings) -> int:
    """`max.message.bytes` of Myko's topics: a whole result fits in one record."""
    return kafka.max_result_bytes + RECORD_OVERHEAD_BYTES


def tx_log_topic(kafka: KafkaSettings, *, window_ms: int) -> TopicSpec:
    """One partition, so the log's order is commit order and "the last N txs" is its tail."""
    cfg = {
        # Each tx is written once: nothing to compact; forgotten after the dedupe
        # window (plus an hour for clock skew between producer and broker).
        "cleanup.policy": "delete",
        "retention.ms": str(window_ms + 3600 * 1000),
        # Retention deletes whole segments: keep them small next to the window.
        "segment.ms": str(min(window_ms, 3600 * 1000)),
        "max.message.bytes": str(max_record_bytes(kafka)),
        "min.insync.replicas": str(kafka.topic_min_insync_replicas),
    }
    return TopicSpec(kafka.topic_prefix + TX_LOG, 1, cfg)


def lease_topic(kafka: KafkaSettings, name: str) -> TopicSpec:
    """One partition: whoever is assigned it in the consumer group leads."""
    cfg = {"cleanup.policy": "compact", "min.insync.replicas": str(kafka.topic_min_insync_replicas)}
    return TopicSpec(kafka.topic_prefix + name, 1, cfg)


def quarantine_topic(kafka: KafkaSettings, name: str) -> TopicSpec:
    """Copies of undecodable records, keyed by their coordinates (docs/quarantine.md).

    Compacted, so the copies several replicas (or restarts) make of one record
    collapse into one, and never expired: a copy waits for an operator.
    """
    cfg = {"cleanup.policy": "compact", "min.insync.replicas": str(kafka.topic_min_insync_replicas)}
    return TopicSpec(kafka.topic_prefix + name, kafka.topic_partitions, cfg)


async def ensure_topics(kafka: KafkaSettings, specs: Iterable[TopicSpec], *, timeout_s: float = 60.0) -> None:
    """Create missing topics; retry while the cluster is still coming up.

    Kafka refusing this service (bad credentials, no CREATE on a topic it needs:
    docs/security.md, "Kafka") is a ConfigError at once: retrying cannot help.
    """
    wanted = {s.name: s for s in specs}
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**kafka.client_args(), request_timeout_ms=kafka.request_timeout_ms)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(s.name, s.partitions, kafka.topic_replication_factor, topic_configs=s.config)
                for name, s in wanted.items()
                if name not in existing
            ]
            if missing:
                response = await admin.create_topics(missing)
                _check_created(response.to_object()["topic_errors"], kafka)
                log.info("created topics %s", [t.name for t in missing])
            return
        except _REFUSED as exc:
            raise _refused(exc, kafka) from None
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            # A refused login looks like "unable to bootstrap" from here: ask a broker why.
            if isinstance(exc, KafkaConnectionError) and (login := await _login_error(kafka)) is not None:
                raise _refused(login, kafka) from None
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"cannot create topics on {kafka.bootstrap_servers}: {exc}") from exc
            log.warning("topic creation failed, retrying: %s", exc)
            await asyncio.sleep(1.0)
        finally:
            await admin.close()


async def max_message_bytes_of(kafka: KafkaSettings, names: Iterable[str]) -> dict[str, int]:
    """The effective `max.message.bytes` of existing topics (topics created before it was set
    have the broker's default, usually 1 MiB)."""
    try:
        return await topic_config_ints(kafka, names, "max.message.bytes")
    except (KafkaError, OSError) as exc:
        raise Unavailable(f"cannot describe topics on {kafka.bootstrap_servers}: {exc}") from exc


async def topic_config_ints(kafka: KafkaSettings, names: Iterable[str], config: str) -> dict[str, int]:
    """Topic -> the effective value of the integer setting `config` (the broker's default where
    the topic does not set it). Kafka's and the socket's errors are the caller's to handle."""
    admin = AIOKafkaAdminClient(**kafka.client_args(), request_timeout_ms=kafka.request_timeout_ms)
    try:
        await admin.start()
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n, {config: None}) for n in names]
        )
    finally:
        await admin.close()
    found: dict[str, int] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                if entry["config_names"] == config and entry["config_value"]:
                    found[resource["resource_name"]] = int(entry["config_value"])
    return found


# Kafka said no to who we are or to what we asked: the same answer next time.
_REFUSED = (
    AuthenticationFailedError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


def _refused(exc: Exception, kafka: KafkaSettings) -> ConfigError:
    who = f"User:{kafka.username}" if kafka.username else "an unauthenticated client"
    return ConfigError(
        f"Kafka at {kafka.bootstrap_servers} refused {who}: {exc}. Check MYKO_KAFKA_USERNAME/"
        "MYKO_KAFKA_PASSWORD and that `myko kafka-access` granted this service its topics"
    )


async def _login_error(kafka: KafkaSettings) -> Exception | None:
    """With SASL: the error a broker gives this service's login, if it refuses it."""
    if not kafka.security_protocol.startswith("SASL_"):
        return None
    host, _, port = kafka.bootstrap_servers.split(",")[0].strip().rpartition(":")
    args = kafka.client_args()
    del args["bootstrap_servers"]
    try:
        conn = await create_conn(host, int(port), request_timeout_ms=kafka.request_timeout_ms, **args)
    except _REFUSED as exc:
        refused: Exception = exc
        return refused
    except (KafkaError, OSError, TimeoutError):
        return None  # not a refusal: the broker may just not be up yet
    conn.close()
    return None


def _check_created(results: list[dict[str, object]], kafka: KafkaSettings) -> None:
    """Raise for a topic that was not created (another service creating it first is fine)."""
    for result in results:
        code = int(str(result["error_code"]))
        if code == 0:
            continue
        error = for_code(code)
        if error is TopicAlreadyExistsError:
            continue
        text = f"topic {result['topic']}: {error.__name__} {result.get('error_message') or ''}".strip()
        if issubclass(error, _REFUSED):
            raise _refused(error(text), kafka)
        raise error(text)
