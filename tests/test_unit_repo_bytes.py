"""Unit tests: a Repo stores each entity's bytes and decodes on read.

What a user relies on: results encoded from the stored bytes are byte-for-byte
what serialising the entities gives; reads return messages the caller may
change without changing the store; the decoded cache stays within its bound
and never serves a stale state; repo_svc's events are rebuilt exactly.
"""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message
from target_store import TOPIC, Target, packed_result, registry

from myko.entity_array import EntityArray
from myko.entity_batch_decoder import EntityBatchDecoder
from myko.errors import ConfigError
from myko.events import DEL, SET
from myko.query_result_encoder import QueryResultEncoder
from myko.repo import Repo, Store
from myko.repo_service import snapshot_chunks
from myko.settings import CommandSettings, QuerySettings, RepoSettings
from myko.v1 import item_pb2, query_pb2, repo_pb2
from myko.watermark import Watermark


def target(tid: str, name: str, *, version: int = 1, zone: str = "") -> Target:
    t = Target(name=name, zone_id=zone, tags=["a", "b"], score=2.5)
    t.item.id = tid
    t.item.type = TOPIC
    t.item.version = version
    return t


def set_ev(t: Target, offset: int) -> item_pb2.Event:
    packed = any_pb2.Any()
    packed.Pack(t, deterministic=True)
    return item_pb2.Event(
        op=SET,
        type=TOPIC,
        id=t.item.id,
        tx=f"tx-{offset}",
        ts=timestamp_pb2.Timestamp(seconds=1_700_000_000 + offset, nanos=5),
        source="command-1",
        principal="alice",
        entity=packed,
        offset=item_pb2.Offset(topic=TOPIC, partition=0, offset=offset),
    )


def del_ev(tid: str, offset: int) -> item_pb2.Event:
    return item_pb2.Event(
        op=DEL, type=TOPIC, id=tid, offset=item_pb2.Offset(topic=TOPIC, partition=0, offset=offset)
    )


def reference(entities: list[Message], seq: int) -> bytes:
    return packed_result(entities, watermark(seq), seq, deterministic=True)


def watermark(offset: int) -> item_pb2.Watermark:
    return item_pb2.Watermark(positions=[item_pb2.Offset(topic=TOPIC, partition=0, offset=offset)])


def store_with(targets: list[Target], **kwargs: int) -> Store:
    store = Store(registry(), **kwargs)  # type: ignore[arg-type]
    store.apply_events([set_ev(t, i) for i, t in enumerate(targets)], Watermark({(TOPIC, 0): len(targets)}))
    return store


def by_name(t: Target) -> str:
    return t.name


def test_a_watch_array_is_encoded_from_the_stored_bytes_byte_for_byte() -> None:
    # Names of 0, 1, 100 and 300 characters: one- and two-byte length prefixes.
    targets = [target(f"t{i}", "n" * size) for i, size in enumerate([0, 1, 100, 300, 7])]
    targets += [target(f"u{i}", f"name {i}", zone="z1") for i in range(200)]
    store = store_with(targets)
    repo = store.of(Target)
    arrays: list[list[Target]] = []
    watch = repo.watch(order_by=by_name).subscribe(arrays.append)
    encoder = QueryResultEncoder("targets.v1.AllTargets")
    first = arrays[-1]
    assert isinstance(first, EntityArray) and first.encodings is not None
    assert first.encodings == [repo.encoded(t.item.id) for t in first]
    assert encoder.encode(first, watermark(1), 1) == reference(list(first), 1)
    # A live emission after a change (a new entity, a longer one, a delete) too.
    store.apply_events(
        [
            set_ev(target("t1", "x" * 200, version=2), 1000),
            set_ev(target("new", "m"), 1001),
            del_ev("u5", 1002),
        ],
        Watermark({(TOPIC, 0): 1003}),
    )
    second = arrays[-1]
    assert isinstance(second, EntityArray) and second.encodings is not None
    assert len(second) == len(first)  # one added, one deleted
    assert encoder.encode(second, watermark(2), 2) == reference(list(second), 2)
    watch.dispose()


def test_the_result_is_the_stored_encoding_not_a_re_serialisation() -> None:
    """The encoder writes what was stored, so it never pays a serialisation for it."""
    store = store_with([target("a", "A")])
    repo = store.of(Target)
    # A valid encoding that is not the canonical one: field `name` (2) written twice
    # (the last wins when parsed). Serialising the decoded entity would differ.
    canonical = target("b", "B").SerializeToString(deterministic=True)
    odd = canonical + b"\x12\x01B"
    event = set_ev(target("b", "B"), 10)
    event.entity.value = odd
    store.apply_events([event], Watermark({(TOPIC, 0): 11}))
    arrays: list[list[Target]] = []
    repo.watch(order_by=by_name).subscribe(arrays.append).dispose()
    encoded = QueryResultEncoder("targets.v1.AllTargets").encode(arrays[-1], watermark(1), 1)
    assert odd in encoded
    parsed = query_pb2.QueryResult.FromString(encoded)
    assert [Target.FromString(i.value).name for i in parsed.items] == ["A", "B"]


def test_an_array_changed_by_the_handler_is_serialised_from_its_entities() -> None:
    store = store_with([target(f"t{i}", f"name {i}") for i in range(20)])
    arrays: list[list[Target]] = []
    store.of(Target).watch(order_by=by_name).subscribe(arrays.append).dispose()
    encoder = QueryResultEncoder("targets.v1.AllTargets")
    arr = arrays[-1]
    assert isinstance(arr, EntityArray)

    arr.sort(key=lambda t: t.name, reverse=True)
    assert arr.encodings is None
    assert encoder.encode(arr, watermark(1), 1) == reference(list(arr), 1)

    arr2 = EntityArray(list(arr), [b"x"] * len(arr), arr.type_url)
    arr2.append(target("extra", "E"))
    assert arr2.encodings is None
    arr3 = EntityArray(list(arr), [b"x"] * len(arr), arr.type_url)
    arr3[0] = target("other", "O")
    assert arr3.encodings is None
    arr4 = EntityArray(list(arr), [b"x"] * len(arr), arr.type_url)
    del arr4[0]
    assert arr4.encodings is None
    # Encodings that do not line up with the entities are never used.
    assert EntityArray(list(arr), [b"x"], arr.type_url).encodings is None
    # Slices and copies are plain lists: serialised.
    assert type(arr[1:]) is list


def test_reads_return_messages_the_caller_owns() -> None:
    store = store_with([target("a", "A", zone="z"), target("b", "B", zone="z")])
    repo = store.of(Target)
    first = repo.get("a")
    assert first is not None
    first.name = "changed by a handler"
    again = repo.get("a")  # now served from the decoded cache
    assert again is not None and again.name == "A" and again is not first
    again.name = "changed again"
    assert repo.get("a").name == "A"  # type: ignore[union-attr]
    for read in (
        repo.all(),
        repo.filter(lambda t: True),
        repo.find({"zone_id": "z"}),
        repo.get_many(["a", "b"]),
    ):
        for t in read:
            t.name = "scribbled"
    arrays: list[list[Target]] = []
    repo.watch(order_by=by_name).subscribe(arrays.append).dispose()
    for t in arrays[-1]:
        t.name = "scribbled"
    assert sorted(t.name for t in repo.all()) == ["A", "B"]
    assert repo.find({"name": "A"})[0].item.id == "a"


def test_the_decoded_cache_is_bounded_and_never_stale() -> None:
    targets = [target(f"t{i}", f"n{i}") for i in range(10)]
    repo: Repo[Target] = store_with(targets, cache_entities=3).of(Target)
    for i in range(10):
        repo.get(f"t{i}")
    # The bound holds, and the most recently read are the ones kept.
    assert list(repo._cache) == ["t7", "t8", "t9"]
    repo.get("t7")
    assert list(repo._cache) == ["t8", "t9", "t7"]
    # A change replaces the cached state: the next read sees the new one.
    store = store_with(targets, cache_entities=3)
    repo = store.of(Target)
    assert repo.get("t1").name == "n1"  # type: ignore[union-attr]
    store.apply_events([set_ev(target("t1", "renamed", version=2), 50)], Watermark({(TOPIC, 0): 51}))
    assert repo.get("t1").name == "renamed"  # type: ignore[union-attr]
    store.apply_events([del_ev("t1", 51)], Watermark({(TOPIC, 0): 52}))
    assert repo.get("t1") is None and "t1" not in repo._cache
    # 0 keeps nothing decoded.
    none_kept = store_with(targets, cache_entities=0).of(Target)
    assert none_kept.get("t2").name == "n2"  # type: ignore[union-attr]
    assert len(none_kept._cache) == 0
    with pytest.raises(ValueError):
        Store(registry(), cache_entities=-1)


def test_indexes_follow_changes_without_keeping_decoded_entities() -> None:
    store = Store(registry(), indexes={TOPIC: ["zone_id"]}, keep_events=False, cache_entities=0)
    store.apply_events(
        [set_ev(target("a", "A", zone="z1"), 0), set_ev(target("b", "B", zone="z1"), 1)],
        Watermark({(TOPIC, 0): 2}),
    )
    repo = store.of(Target)
    store.apply_events(
        [set_ev(target("a", "A", version=2, zone="z2"), 2), del_ev("b", 3)], Watermark({(TOPIC, 0): 4})
    )
    assert [t.item.id for t in repo.find({"zone_id": "z2"})] == ["a"]
    assert repo.find({"zone_id": "z1"}) == []
    assert all(isinstance(b, bytes) for b in repo._bytes.values()) and len(repo._cache) == 0


def test_repo_svc_rebuilds_each_entitys_event_exactly() -> None:
    t = target("a", "A")
    original = set_ev(t, 7)
    store = Store(registry())
    store.apply_events([original], Watermark({(TOPIC, 0): 8}))
    rebuilt = store.of(Target).event_of("a")
    assert rebuilt is not None
    assert rebuilt.SerializeToString(deterministic=True) == original.SerializeToString(deterministic=True)
    assert [e.id for e in store.snapshot()] == ["a"]
    # A store that serves no events keeps none.
    mirror = Store(registry(), keep_events=False)
    mirror.apply_events([original], Watermark({(TOPIC, 0): 8}))
    assert mirror.of(Target).event_of("a") is None and mirror.snapshot() == []


@pytest.mark.parametrize("settings", [CommandSettings, RepoSettings, QuerySettings])
def test_the_cache_size_is_a_setting_checked_at_start_up(settings: type[QuerySettings]) -> None:
    env = {"MYKO_APP": "targets", "MYKO_AUTH_DISABLED": "true"}
    assert settings.from_env(env).repo_cache_entities == 1024
    assert settings.from_env({**env, "MYKO_REPO_CACHE_ENTITIES": "0"}).repo_cache_entities == 0
    for bad in ("-1", "many", "2000000"):
        with pytest.raises(ConfigError, match="MYKO_REPO_CACHE_ENTITIES"):
            settings.from_env({**env, "MYKO_REPO_CACHE_ENTITIES": bad})


def test_a_repo_snapshot_is_written_from_the_stored_bytes_and_parses_to_the_events() -> None:
    store = Store(registry())
    originals = [set_ev(target(f"t{i}", "n" * (i * 60)), i * 100_000) for i in range(4)]
    originals[0].offset.partition = 0  # zero fields are left out of the encoding
    originals[2].offset.partition = 3
    originals[3].principal = ""
    store.apply_events(originals, Watermark({(TOPIC, 0): 400_000, (TOPIC, 3): 200_001}))
    store.apply_events([del_ev("t1", 400_000)], Watermark({(TOPIC, 0): 400_001}))
    encoded = [store.of(Target).event_bytes(i) for i in store.of(Target).ids()]
    assert [item_pb2.Event.FromString(b) for b in encoded if b is not None] == store.snapshot()
    assert store.snapshot() == [originals[0], originals[2], originals[3]]
    wm = store.watermark.to_proto()
    chunks = [
        repo_pb2.RepoChange.FromString(c) for c in snapshot_chunks(store, [TOPIC, "targets.v1.Zone"], wm)
    ]
    assert chunks == [repo_pb2.RepoChange(snapshot=True, events=store.snapshot(), watermark=wm)]
    # Chunks of SNAPSHOT_CHUNK events, in store order, each with the watermark.
    many = Store(registry())
    many.apply_events(
        [set_ev(target(f"m{i:04d}", "m"), i) for i in range(1100)], Watermark({(TOPIC, 0): 1100})
    )
    wm = many.watermark.to_proto()
    parsed = [repo_pb2.RepoChange.FromString(c) for c in snapshot_chunks(many, [TOPIC], wm)]
    assert [len(c.events) for c in parsed] == [500, 500, 100]
    assert all(c.snapshot and c.watermark == wm and not c.snapshot_complete for c in parsed)
    assert [e for c in parsed for e in c.events] == many.snapshot()


def test_a_batch_decode_gives_each_entity_as_decoding_it_alone() -> None:
    encodings = [b""] + [target(f"t{i}", "n" * i).SerializeToString() for i in range(0, 300, 7)]
    # Two decoders of one type share the synthetic list type (registered once).
    for decoder in (EntityBatchDecoder(Target), EntityBatchDecoder(Target)):
        decoded = list(decoder.decode(encodings))
        assert decoded == [Target.FromString(b) for b in encodings]
        assert all(type(e) is Target for e in decoded)
        decoded[1].name = "changed"  # entities of one batch are independent of each other
        assert decoded[2].name == "n" * 7 and decoded[1] != decoded[2]
    assert list(EntityBatchDecoder(Target).decode([])) == []
