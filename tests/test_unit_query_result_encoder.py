"""Unit tests: QueryResult bytes written directly, reused between emissions of one evaluation."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message
from target_store import packed_result
from targets.v1 import entities_pb2

from myko.entity_array import EntityArray
from myko.query_result_encoder import QueryResultEncoder
from myko.v1 import item_pb2, query_pb2

Target = entities_pb2.Target
TYPE_URL = "type.googleapis.com/targets.v1.Target"


def reference(entities: Sequence[Message], watermark: item_pb2.Watermark, seq: int) -> bytes:
    """What live_bus built before the encoder."""
    return packed_result(list(entities), watermark, seq)


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


def stored_array(entities: list[Target]) -> EntityArray[Target]:
    """What a store's watch emits: the entities with their stored (deterministic) encodings."""
    return EntityArray(entities, [e.SerializeToString(deterministic=True) for e in entities], TYPE_URL)


def test_stored_encodings_of_every_length_are_written_byte_for_byte() -> None:
    # Encodings of more distinct lengths than the encoder keeps frames for, some with
    # multi-byte length prefixes, and the empty encoding (an Any without value).
    entities = [target(str(i), "n" * i) for i in range(0, 5000, 1)]
    entities.append(Target())
    encoder = QueryResultEncoder("targets.v1.AllTargets")
    assert encoder.encode(stored_array(entities), watermark(1), 1) == reference(entities, watermark(1), 1)
    assert encoder.encode(stored_array([]), watermark(2), 2) == reference([], watermark(2), 2)
    window = query_pb2.ResultWindow(offset=10, total=12, counted=True)
    few = entities[10:12]
    expected = query_pb2.QueryResult.FromString(reference(few, watermark(3), 3))
    expected.window.CopyFrom(window)
    assert encoder.encode(stored_array(few), watermark(3), 3, window) == expected.SerializeToString(
        deterministic=True
    )


def test_the_same_array_again_is_restamped_with_the_new_watermark() -> None:
    """A subscriber joining after the store moved on gets the same items, stamped with where it is now."""
    encoder = QueryResultEncoder("targets.v1.AllTargets")
    entities = [target(str(i), f"t{i}", hits=i) for i in range(200)]
    array = stored_array(entities)
    first = encoder.encode(array, watermark(5), 1)
    assert first == reference(entities, watermark(5), 1)
    again = encoder.encode(array, watermark(9), 1)
    assert again == reference(entities, watermark(9), 1)
    window = query_pb2.ResultWindow(offset=0, total=200, counted=True)
    windowed = query_pb2.QueryResult.FromString(encoder.encode(array, watermark(11), 2, window))
    assert windowed.window == window and windowed.watermark == watermark(11) and windowed.seq == 2
    assert [i.value for i in windowed.items] == array.encodings
    # A different array (the next change) is written from its own encodings, not the last bytes.
    changed = [*entities[:199], target("199", "t199", hits=1000)]
    assert encoder.encode(stored_array(changed), watermark(12), 3) == reference(changed, watermark(12), 3)
    # And so is a plain list after it.
    assert encoder.encode(list(entities), watermark(13), 4) == reference(entities, watermark(13), 4)
