"""Unit tests: reduction of SET/DEL into a Repo, and its watch streams (virtual time)."""

from __future__ import annotations

from typing import cast

from google.protobuf import any_pb2
from reactivex.notification import OnNext
from reactivex.testing import TestScheduler
from target_store import TOPIC, Target, registry
from targets.v1 import entities_pb2

from myko.entity_array import EntityArray
from myko.events import DEL, SET
from myko.repo import Store
from myko.v1 import item_pb2
from myko.watermark import Watermark


def target(tid: str, name: str, status: int = entities_pb2.TARGET_STATUS_ACTIVE, version: int = 1) -> Target:
    t = Target(name=name, status=status)  # type: ignore[arg-type]
    t.item.id = tid
    t.item.type = "targets.v1.Target"
    t.item.version = version
    return t


def set_ev(t: Target, offset: int, partition: int = 0) -> item_pb2.Event:
    packed = any_pb2.Any()
    packed.Pack(t)
    return item_pb2.Event(
        op=SET,
        type="targets.v1.Target",
        id=t.item.id,
        entity=packed,
        offset=item_pb2.Offset(topic=TOPIC, partition=partition, offset=offset),
    )


def del_ev(tid: str, offset: int, partition: int = 0) -> item_pb2.Event:
    return item_pb2.Event(
        op=DEL,
        type="targets.v1.Target",
        id=tid,
        offset=item_pb2.Offset(topic=TOPIC, partition=partition, offset=offset),
    )


def wm(offset: int) -> Watermark:
    return Watermark({(TOPIC, 0): offset})


def test_set_then_del_reduces_to_latest_state() -> None:
    store = Store(registry())
    repo = store.of(Target)
    store.apply_events([set_ev(target("a", "A"), 0), set_ev(target("b", "B"), 1)], wm(2))
    store.apply_events([set_ev(target("a", "A2", version=2), 2), del_ev("b", 3)], wm(4))
    a = repo.get("a")
    assert a is not None and a.name == "A2" and a.item.version == 2
    assert repo.get("b") is None
    assert len(repo) == 1
    assert store.watermark == wm(4)


def test_replayed_or_older_events_are_ignored() -> None:
    store = Store(registry())
    store.apply_events([set_ev(target("a", "new", version=2), 5)], wm(6))
    store.apply_events([set_ev(target("a", "old"), 3)], wm(6))
    a = store.of(Target).get("a")
    assert a is not None and a.name == "new"


def test_delete_of_unknown_id_changes_nothing() -> None:
    store = Store(registry())
    seen: list[object] = []
    store.of(Target).changes.subscribe(seen.append)
    store.apply_events([del_ev("ghost", 0)], wm(1))
    assert seen == []


def test_watch_emits_full_ordered_array_only_on_change() -> None:
    store = Store(registry())
    repo = store.of(Target)
    got: list[list[str]] = []
    repo.watch(
        where=lambda t: t.status == entities_pb2.TARGET_STATUS_ACTIVE, order_by=lambda t: t.name
    ).subscribe(lambda ts: got.append([t.name for t in ts]))
    assert got == [[]]
    store.apply_events([set_ev(target("b", "bravo"), 0), set_ev(target("a", "alpha"), 1)], wm(2))
    assert got[-1] == ["alpha", "bravo"]
    n = len(got)
    # A paused target is outside the result: nothing emitted.
    store.apply_events([set_ev(target("c", "charlie", entities_pb2.TARGET_STATUS_PAUSED), 2)], wm(3))
    assert len(got) == n
    # Re-applying identical state (e.g. a replay) emits nothing either.
    store.apply_events([set_ev(target("a", "alpha"), 3)], wm(4))
    assert len(got) == n
    # Leaving the filter removes it.
    store.apply_events([set_ev(target("a", "alpha", entities_pb2.TARGET_STATUS_PAUSED, 2), 4)], wm(5))
    assert got[-1] == ["bravo"]


def test_one_batch_is_one_emission() -> None:
    store = Store(registry())
    got: list[int] = []
    store.of(Target).watch().subscribe(lambda ts: got.append(len(ts)))
    store.apply_events([set_ev(target(str(i), f"t{i}"), i) for i in range(50)], wm(50))
    assert got == [0, 50]


def test_reset_to_snapshot_emits_only_the_difference() -> None:
    store = Store(registry())
    store.apply_events([set_ev(target("a", "A"), 0), set_ev(target("b", "B"), 1)], wm(2))
    got: list[list[str]] = []
    store.of(Target).watch(order_by=lambda t: t.name).subscribe(lambda ts: got.append([t.name for t in ts]))
    # Same state again (a reconnect): no emission.
    store.reset([set_ev(target("a", "A"), 0), set_ev(target("b", "B"), 1)], wm(2))
    assert got == [["A", "B"]]
    # b vanished while disconnected, c appeared.
    store.reset([set_ev(target("a", "A"), 0), set_ev(target("c", "C"), 5)], wm(6))
    assert got == [["A", "B"], ["A", "C"]]


def test_watch_in_virtual_time() -> None:
    """Batches arriving at virtual times produce emissions at exactly those times."""
    scheduler = TestScheduler()
    store = Store(registry())
    repo = store.of(Target)
    scheduler.schedule_absolute(300, lambda *_: store.apply_events([set_ev(target("a", "A"), 0)], wm(1)))
    scheduler.schedule_absolute(400, lambda *_: store.apply_events([set_ev(target("b", "Z"), 1)], wm(2)))
    scheduler.schedule_absolute(500, lambda *_: store.apply_events([del_ev("a", 2)], wm(3)))

    observer = scheduler.start(
        lambda: repo.watch(order_by=lambda t: t.name), created=100, subscribed=200, disposed=450
    )
    assert all(isinstance(m.value, OnNext) for m in observer.messages)
    names = [(m.time, [t.name for t in cast(OnNext[list[Target]], m.value).value]) for m in observer.messages]
    assert names == [(200, []), (300, ["A"]), (400, ["A", "Z"])]  # disposed before 500


def test_watch_by_equal_fields_matches_a_scan_through_every_change() -> None:
    """Indexed selection (equal=) gives what the same filter as a scan gives, at every step."""
    store = Store(registry())
    repo = store.of(Target)

    def zoned(
        tid: str, zone: str, status: int = entities_pb2.TARGET_STATUS_ACTIVE, version: int = 1
    ) -> Target:
        t = target(tid, f"n-{tid}", status, version)
        t.zone_id = zone
        return t

    store.apply_events([set_ev(zoned("a", "z1"), 0), set_ev(zoned("b", "z2"), 1)], wm(2))
    indexed: list[list[str]] = []
    scanned: list[list[str]] = []
    active_in_z1 = {"zone_id": "z1", "status": entities_pb2.TARGET_STATUS_ACTIVE}
    repo.watch(equal=active_in_z1).subscribe(lambda ts: indexed.append([t.item.id for t in ts]))
    repo.watch(where=lambda t: t.zone_id == "z1" and t.status == entities_pb2.TARGET_STATUS_ACTIVE).subscribe(
        lambda ts: scanned.append([t.item.id for t in ts])
    )
    by_id: list[list[str]] = []
    repo.watch(equal={"item.id": "c"}).subscribe(lambda ts: by_id.append([t.item.id for t in ts]))
    steps = [
        [set_ev(zoned("c", "z1"), 2)],  # joins
        [set_ev(zoned("b", "z1", version=2), 3)],  # moves in
        [set_ev(zoned("a", "z2", version=2), 4)],  # moves out
        [set_ev(zoned("c", "z1", entities_pb2.TARGET_STATUS_PAUSED, 2), 5)],  # other field leaves
        [del_ev("b", 6)],
        [set_ev(zoned("b", "z1", version=3), 7)],  # back after a delete
    ]
    for i, events in enumerate(steps):
        store.apply_events(events, wm(8 + i))
        assert indexed == scanned
        # A watch started now, from the maintained index, agrees as well.
        assert [t.item.id for t in repo.find(active_in_z1)] == scanned[-1]
    assert scanned[-1] == ["b"]
    assert by_id == [[], ["c"], ["c"]]
    assert repo.find({"zone_id": "nowhere"}) == []
    # The same through a reset (what a reconnecting mirror does).
    store.reset([set_ev(zoned("d", "z1"), 20)], wm(21))
    assert indexed[-1] == scanned[-1] == ["d"]
    assert [t.item.id for t in repo.find({"zone_id": "z2"})] == []


def test_a_declared_index_answers_like_a_scan_from_the_first_event() -> None:
    """Declared indexes are kept from construction on, through changes, deletes and a reset."""
    store = Store(registry(), indexes={"targets.v1.Target": ["zone_id"]})
    repo = store.of(Target)

    def zoned(tid: str, zone: str, version: int = 1) -> Target:
        t = target(tid, f"n-{tid}", version=version)
        t.zone_id = zone
        return t

    steps = [
        [set_ev(zoned("a", "z1"), 0), set_ev(zoned("b", "z2"), 1), set_ev(zoned("c", "z1"), 2)],
        [set_ev(zoned("a", "z2", version=2), 3)],
        [del_ev("c", 4)],
        [set_ev(zoned("c", "z2", version=3), 5)],
    ]
    for i, events in enumerate(steps):
        store.apply_events(events, wm(i + 1))
        for zone in ("z1", "z2", "z3"):
            scanned = sorted(t.item.id for t in repo.filter(lambda t, z=zone: t.zone_id == z))  # type: ignore[misc]
            assert [t.item.id for t in repo.find({"zone_id": zone})] == scanned
    store.reset([set_ev(zoned("d", "z3"), 20)], wm(21))
    assert [t.item.id for t in repo.find({"zone_id": "z3"})] == ["d"]
    assert repo.find({"zone_id": "z2"}) == []


def test_a_changed_entity_moves_to_its_new_place_in_the_order() -> None:
    store = Store(registry())
    got: list[list[str]] = []
    store.of(Target).watch(order_by=lambda t: t.name).subscribe(
        lambda ts: got.append([t.item.id for t in ts])
    )
    store.apply_events(
        [set_ev(target(i, n), k) for k, (i, n) in enumerate([("a", "A"), ("b", "B"), ("c", "C")])], wm(3)
    )
    assert got[-1] == ["a", "b", "c"]
    store.apply_events([set_ev(target("a", "D", version=2), 3)], wm(4))  # renamed: sorts last now
    assert got[-1] == ["b", "c", "a"]
    store.apply_events([del_ev("c", 4), set_ev(target("e", "0"), 5)], wm(6))
    assert got[-1] == ["e", "b", "a"]


def test_a_store_without_events_reduces_replays_and_resets_the_same() -> None:
    """keep_events=False (query/command mirrors) skips replays by position like a full store."""
    full, lean = Store(registry()), Store(registry(), keep_events=False)
    batches = [
        [set_ev(target("a", "A"), 0), set_ev(target("b", "B"), 1)],
        [set_ev(target("a", "A2", version=2), 2)],
        [set_ev(target("a", "A"), 0)],  # a replay of an older offset: ignored
        [del_ev("b", 3)],
        [set_ev(target("b", "B3", version=3), 4, partition=1)],
    ]
    for i, events in enumerate(batches):
        for store in (full, lean):
            store.apply_events(events, wm(i + 1))
        assert [t.name for t in lean.of(Target).all()] == [t.name for t in full.of(Target).all()]
    assert sorted(t.name for t in lean.of(Target).all()) == ["A2", "B3"]
    assert lean.of(Target).event_of("a") is None and full.of(Target).event_of("a") is not None
    for store in (full, lean):
        store.reset([set_ev(target("c", "C"), 9)], wm(10))
        assert [t.name for t in store.of(Target).all()] == ["C"]


def test_first_is_the_array_a_subscription_starts_with() -> None:
    """`EntityWatch.array_now()` (what a Get answers with) equals a subscription's first array,
    entities and stored encodings, whichever way the array is made: the kept order, a
    small indexed selection sorted, a `where` filter, an undeclared order."""

    def by_name(t: Target) -> str:
        return t.name

    store = Store(
        registry(), indexes={"targets.v1.Target": ["zone_id"]}, orders={"targets.v1.Target": [by_name]}
    )
    events = []
    for k in range(200):
        t = target(f"t{k:03d}", f"n{(k * 7) % 40}")  # repeated names: ties broken by id
        t.zone_id = f"z{k % 50}"  # 4 per zone: a small share, sorted rather than walked
        events.append(set_ev(t, k))
    store.apply_events(events, wm(200))
    repo = store.of(Target)
    watches = [
        repo.watch(order_by=by_name),
        repo.watch(equal={"zone_id": "z7"}, order_by=by_name),
        repo.watch(equal={"zone_id": "nowhere"}, order_by=by_name),
        repo.watch(lambda t: t.name.endswith("3"), order_by=by_name),
        repo.watch(order_by=lambda t: (t.name, t.item.id)),
        repo.watch(),
    ]
    for watch in watches:
        emitted: list[list[Target]] = []
        watch.subscribe(emitted.append).dispose()
        first = watch.array_now()
        assert [t.item.id for t in first] == [t.item.id for t in emitted[0]]
        assert first.encodings == cast(EntityArray[Target], emitted[0]).encodings
    in_z7 = watches[1].array_now()
    assert [t.item.id for t in in_z7] == ["t157", "t107", "t057", "t007"]  # n19, n29, n39, n9
