"""The example's Target domain as the store unit tests use it, and results as protobuf builds them."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.message import Message
from targets.v1 import entities_pb2

from myko.entities import EntityRegistry
from myko.v1 import item_pb2, query_pb2

Target = entities_pb2.Target
TOPIC = "targets.v1.Target"


def registry() -> EntityRegistry:
    reg = EntityRegistry()
    reg.add(Target)
    reg.add(entities_pb2.Zone)
    return reg


def packed_result(
    entities: list[Message], watermark: item_pb2.Watermark, seq: int, *, deterministic: bool = False
) -> bytes:
    """An AllTargets result the plain way: every entity packed into an Any, then serialised."""
    items = []
    for e in entities:
        packed = any_pb2.Any()
        packed.Pack(e, deterministic=True)
        items.append(packed)
    return query_pb2.QueryResult(
        query_type="targets.v1.AllTargets", items=items, watermark=watermark, seq=seq
    ).SerializeToString(deterministic=deterministic)
