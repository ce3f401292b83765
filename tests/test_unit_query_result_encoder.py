"""Unit tests: QueryResult bytes written directly, reused between emissions of one evaluation."""

from __future__ import annotations

from google.protobuf.message import Message
from target_store import packed_result
from targets.v1 import entities_pb2

from myko.query_result_encoder import QueryResultEncoder
from myko.v1 import item_pb2, query_pb2

Target = entities_pb2.Target


def reference(entities: list[Message], watermark: item_pb2.Watermark, seq: int) -> bytes:
    """What live_bus built before the encoder."""
    return packed_result(entities, watermark, seq)


def target(tid: str, name: str, hits: int = 0) -> Target:
    t = Target(name=name, hit_count=hits, tags=["x", "y"], score=1.5)
    t.item.id = tid
    t.item.version = hits + 1
    return t


def watermark(offset: int) -> item_pb2.Watermark:
    return item_pb2.Watermark(positions=[item_pb2.Offset(topic="t", partition=0, offset=offset)])


def test_encoding_is_byte_for_byte_the_protobuf_serialisation() -> None:
    encoder = QueryResultEncoder("targets.v1.AllTargets")
    long_name = "n" * 300  # multi-byte length prefixes
    cases: list[list[Message]] = [
        [],
        [Target()],  # all defaults: the Any has no value field at all
        [target("a", "A"), target("b", long_name, hits=2**40), entities_pb2.Zone(name="z")],
        [target(str(i), f"t{i}") for i in range(300)],
    ]
    for seq, entities in enumerate(cases, 1):
        assert encoder.encode(entities, watermark(seq * 1000), seq) == reference(
            entities, watermark(seq * 1000), seq
        )


def test_a_replaced_entity_is_encoded_anew_and_the_others_unchanged() -> None:
    encoder = QueryResultEncoder("targets.v1.AllTargets")
    a, b = target("a", "A"), target("b", "B")
    first = encoder.encode([a, b], watermark(1), 1)
    b2 = target("b", "B", hits=7)  # what a store does on a change: a new object
    second = encoder.encode([a, b2], watermark(2), 2)
    assert second == reference([a, b2], watermark(2), 2)
    decoded = query_pb2.QueryResult.FromString(second)
    got = []
    for item in decoded.items:
        t = Target()
        assert item.Unpack(t)
        got.append((t.item.id, t.hit_count))
    assert got == [("a", 0), ("b", 7)]
    assert first != second
    # Dropped entities are forgotten; a later result without them is exact too.
    assert encoder.encode([b2], watermark(3), 3) == reference([b2], watermark(3), 3)
