"""Unit tests: a mirror's bulk snapshot load leaves exactly what the event-by-event reset leaves.

`Store.reset` of a snapshot of SETs and `Store.load_snapshot` of columns (what
query_svc and report_svc take from repo_svc) skip the Event per entity; the
event path (`Store._reset_by_events`, the reset before the bulk one) is the
reference. Each case builds the same history in three stores, resets each by
one path, and compares everything a reader or a watch can see: the stored
bytes and positions, the declared indexes, the kept orders, what running
watches, windows and batch subscribers were sent, and what later events do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import any_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reactivex.abc import DisposableBase
from target_store import TOPIC, Target, registry
from targets.v1 import entities_pb2

from myko.events import DEL, SET
from myko.query_window import WindowSpec
from myko.repo import BULK_EVENTS, Store, StoreBatch
from myko.repo_feed import SnapshotGather
from myko.repo_service import snapshot_chunks, snapshot_column_chunks
from myko.repo_snapshot import TypeSnapshot
from myko.v1 import item_pb2, repo_pb2
from myko.watermark import Watermark

ZONE = "targets.v1.Zone"


def by_name(t: Target) -> str:
    return t.name.casefold()


def by_score(t: Target) -> tuple[float, str]:
    return (-t.score, t.name)


def target(tid: str, name: str, *, zone: str = "z0", status: int = 1, score: float = 0.0) -> Target:
    t = Target(name=name, zone_id=zone, status=status, score=score)  # type: ignore[arg-type]
    t.item.id = tid
    t.item.type = TOPIC
    return t


def set_ev(t: Any, offset: int, partition: int = 0, type_name: str = TOPIC) -> item_pb2.Event:
    packed = any_pb2.Any()
    packed.Pack(t, deterministic=True)
    return item_pb2.Event(
        op=SET,
        type=type_name,
        id=t.item.id,
        entity=packed,
        offset=item_pb2.Offset(topic=type_name, partition=partition, offset=offset),
    )


def del_ev(tid: str, offset: int) -> item_pb2.Event:
    return item_pb2.Event(
        op=DEL, type=TOPIC, id=tid, offset=item_pb2.Offset(topic=TOPIC, partition=0, offset=offset)
    )


def wm(offset: int) -> Watermark:
    return Watermark({(TOPIC, 0): offset, (TOPIC, 1): offset})


def new_store(*, bad_index: bool = False) -> Store:
    paths = ["status", "zone_id"] + (["no_such_field"] if bad_index else [])
    return Store(
        registry(),
        keep_events=False,
        indexes={TOPIC: paths, ZONE: ["tenant"]},
        orders={TOPIC: [by_name, by_score]},
    )


class Seen:
    """Everything a store sends: each watch's arrays, each window, each type's change batches,
    and the store's batches."""

    def __init__(self, store: Store, *, read_orders: bool) -> None:
        self.store = store
        self.log: list[tuple[str, Any]] = []
        self._subs: list[DisposableBase] = []
        repo = store.of(Target)
        if read_orders:  # built now: kept change by change from here on
            for key in (by_name, by_score):
                assert repo.kept_order(key) is not None
        self._sub("all by name", repo.watch(order_by=by_name), self._names)
        self._sub("zone z1 by name", repo.watch(order_by=by_name, equal={"zone_id": "z1"}), self._names)
        self._sub("status 2 by id", repo.watch(equal={"status": 2}), self._names)
        self._sub("active by score", repo.watch(lambda t: t.status == 1, order_by=by_score), self._names)
        self._sub(
            "window by score",
            repo.watch(order_by=by_score).windowed(WindowSpec(1, 3)),
            lambda w: ([e.item.id for e in w.items], w.total),
        )
        self._sub("one", repo.watch_one("t3"), lambda e: None if e is None else e.SerializeToString())
        self._subs.append(repo.changes.subscribe(lambda c: self.log.append(("changes", _changes(c)))))
        self._subs.append(
            store.of(entities_pb2.Zone).changes.subscribe(
                lambda c: self.log.append(("zone changes", _changes(c)))
            )
        )
        self._subs.append(store.subscribe_batches(self._batch))

    def _sub(self, name: str, source: Any, view: Callable[[Any], Any]) -> None:
        self._subs.append(source.subscribe(lambda v: self.log.append((name, view(v)))))

    @staticmethod
    def _names(entities: list[Any]) -> list[tuple[str, str]]:
        return [(e.item.id, e.name) for e in entities]

    def _batch(self, batch: StoreBatch) -> None:
        self.log.append(("batch", ([(e.op, e.type, e.id) for e in batch.events], batch.watermark)))

    def dispose(self) -> None:
        for sub in self._subs:
            sub.dispose()


def _changes(changed: Any) -> list[tuple[str, bytes | None]]:
    return [(i, None if e is None else e.SerializeToString()) for i, e in changed.items()]


def state(store: Store) -> dict[str, Any]:
    """What the store holds, as plain values (dict orders included)."""
    out: dict[str, Any] = {"watermark": store.watermark}
    for name in (TOPIC, ZONE):
        repo = store.repo(name)
        out[name] = {
            "bytes": list(repo._bytes.items()),
            "positions": list(repo._positions.items()),
            "indexes": {p: {k: sorted(v) for k, v in i._ids.items()} for p, i in repo._indexes.items()},
            "cached": sorted(repo._cache),
            "orders": [(o.built, o.broken, list(o._pending.items())) for o in repo._orders.values()],
        }
    target_repo = store.of(Target)
    out["kept"] = [list(o) for o in target_repo._orders.values()]  # merged: read in order
    return out


def columns_of(events: list[item_pb2.Event]) -> dict[str, TypeSnapshot]:
    out: dict[str, TypeSnapshot] = {}
    for ev in events:
        part = out.setdefault(ev.type, TypeSnapshot([], [], []))
        part.ids.append(ev.id)
        part.values.append(ev.entity.value)
        part.positions.append((ev.offset.topic, ev.offset.partition, ev.offset.offset))
    return out


RESETS: dict[str, Callable[[Store, list[item_pb2.Event], Watermark], None]] = {
    "events": lambda s, evs, w: s._reset_by_events(evs, w),
    "bulk": lambda s, evs, w: s.reset(evs, w),
    "columns": lambda s, evs, w: s.load_snapshot(columns_of(evs), w),
}


def compare(
    history: list[list[item_pb2.Event]],
    snapshot: list[item_pb2.Event],
    after: list[list[item_pb2.Event]],
    *,
    read_orders: bool = True,
    bad_index: bool = False,
    paths: tuple[str, ...] = ("bulk", "columns"),
) -> dict[str, Any]:
    """Run the history, the reset and the later batches through each path; assert they agree."""
    results: dict[str, tuple[dict[str, Any], list[Any], dict[str, Any]]] = {}
    for how, reset in RESETS.items():
        if how != "events" and how not in paths:
            continue
        store = new_store(bad_index=bad_index)
        for i, batch in enumerate(history):
            store.apply_events(batch, wm(i + 1))
        seen = Seen(store, read_orders=read_orders)
        seen.log.clear()  # the first arrays are the history's, not the reset's
        reset(store, snapshot, wm(1000))
        at_reset = state(store)
        for i, batch in enumerate(after):
            store.apply_events(batch, wm(1001 + i))
        seen.dispose()
        results[how] = (at_reset, seen.log, state(store))
    reference = results["events"]
    for how in paths:
        assert results[how][0] == reference[0], f"{how}: the state after the reset differs"
        assert results[how][1] == reference[1], f"{how}: what watches and subscribers saw differs"
        assert results[how][2] == reference[2], f"{how}: the state after later events differs"
    return reference[0]


def _history() -> list[list[item_pb2.Event]]:
    return [
        [
            set_ev(target(f"t{i}", f"N{i % 7}", zone=f"z{i % 3}", status=1 + i % 2, score=i % 5), i)
            for i in range(12)
        ],
        [del_ev("t5", 20), set_ev(target("t2", "renamed", zone="z1"), 21)],
    ]


def test_a_reset_with_changes_deletes_and_new_entities_matches_the_event_path() -> None:
    snapshot = [
        set_ev(target("t0", "N0", zone="z0", status=1, score=0), 0),  # unchanged
        set_ev(target("t1", "moved", zone="z1", status=2, score=9), 30),  # changed: zone, status, order
        set_ev(target("t3", "N3", zone="z0", status=2, score=3), 3),  # unchanged
        set_ev(target("new1", "aaa", zone="z1", status=1, score=1), 31, partition=1),
        set_ev(target("t7", "N0", zone="z2", status=2, score=2), 7),  # unchanged, ties on name
        *[
            set_ev(target(f"t{i}", f"N{i % 7}", zone=f"z{i % 3}", status=1 + i % 2, score=i % 5), i)
            for i in (8, 9)
        ],
    ]  # t2, t4, t6, t10, t11 gone (t5 was deleted before)
    held = compare(_history(), snapshot, [[set_ev(target("t1", "old replay"), 29)], [del_ev("t0", 40)]])
    assert [i for i, _ in held[TOPIC]["bytes"]] == ["t0", "t1", "t3", "t7", "t8", "t9", "new1"]


def test_a_reset_without_watches_and_before_the_orders_are_read_matches_the_event_path() -> None:
    snapshot = [set_ev(target(f"t{i}", f"x{i}", zone="z1"), 50 + i) for i in range(0, 12, 2)]
    compare(_history(), snapshot, [[set_ev(target("t2", "later"), 90)]], read_orders=False)


def test_a_large_first_load_matches_the_event_path() -> None:
    """At least BULK_EVENTS into an empty store: the kept orders are dropped and sorted at
    their first read, in both paths; zones too."""
    n = BULK_EVENTS + 500
    snapshot = [
        set_ev(target(f"t{i:05d}", f"n{i % 97}", zone=f"z{i % 4}", status=1 + i % 3, score=i % 11), i)
        for i in range(n)
    ]
    zone = entities_pb2.Zone(name="Z", tenant="acme")
    zone.item.id = "zone-1"
    snapshot.append(set_ev(zone, 0, type_name=ZONE))
    held = compare([], snapshot, [[set_ev(target("t00001", "moved", zone="z9"), 10**6)]])
    assert len(held[TOPIC]["bytes"]) == n and held[ZONE]["indexes"] == {"tenant": {"acme": ["zone-1"]}}


def test_a_large_reset_over_indexed_entities_matches_the_event_path() -> None:
    """Many changed entities under few keys (the indexes take them in groups) into indexes
    that hold some of those keys already, some ids moving between keys, some gone."""
    history = [
        [set_ev(target(f"t{i:05d}", f"h{i}", zone=f"z{i % 4}", status=1 + i % 2), i) for i in range(300)]
    ]
    n = BULK_EVENTS + 500
    unchanged = history[0][100:200]  # they stay in the indexes: the others join their keys
    snapshot = unchanged + [
        set_ev(target(f"t{i:05d}", f"n{i % 97}", zone=f"z{i % 6}", status=1), 1000 + i)  # one status
        for i in range(200, n)
    ]
    held = compare(history, snapshot, [[set_ev(target("t00200", "moved", zone="z9"), 10**6)]])
    zones = held[TOPIC]["indexes"]["zone_id"]
    assert sorted(zones) == [f"z{k}" for k in range(6)]
    assert sum(map(len, zones.values())) == n - 100 and {"t00100", "t00204"} <= set(zones["z0"])


def test_a_reset_to_an_empty_snapshot_deletes_everything_as_the_event_path_does() -> None:
    compare(_history(), [], [[set_ev(target("t1", "back"), 1)]])


def test_entities_that_do_not_decode_are_skipped_as_the_event_path_skips_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad = set_ev(target("t1", "broken"), 60)
    bad.entity.value = b"\x0a\xff\xff"  # item: a length past the end
    new_bad = set_ev(target("b2", "broken too"), 61)
    new_bad.entity.value = b"\x12\x05ab"
    snapshot = [set_ev(target("t0", "fine"), 62), bad, new_bad]
    with caplog.at_level(logging.ERROR, logger="myko.repo"):
        held = compare(_history(), snapshot, [])
    assert [i for i, _ in held[TOPIC]["bytes"]] == ["t0", "t1"]  # t1 keeps its old state
    assert [i for i, _ in held[TOPIC]["positions"]] == ["t0"]
    assert sum("cannot reduce" in r.message for r in caplog.records) == 6  # two per path


def test_snapshots_the_bulk_path_does_not_take_still_reset_exactly() -> None:
    """An id twice, a DEL in the snapshot, an index whose field does not read: the event path runs."""
    twice = [set_ev(target("t1", "first"), 70), set_ev(target("t1", "second"), 71)]
    compare(_history(), twice, [])
    compare(_history(), [set_ev(target("t1", "x"), 72), del_ev("t3", 73)], [], paths=("bulk",))
    compare(_history()[:1], [set_ev(target("t1", "x"), 74)], [], bad_index=True)


def test_a_watch_started_by_a_notification_gets_its_type_s_batch_as_in_the_event_path() -> None:
    """A Target batch makes a handler start watching zones (a join): it then gets the zones'
    batch of the same reset too."""
    zone = entities_pb2.Zone(name="Z")
    zone.item.id = "zone-1"
    snapshot = [set_ev(target("t1", "x"), 80), set_ev(zone, 81, type_name=ZONE)]
    logs = {}
    for how, reset in RESETS.items():
        store = new_store()
        store.apply_events(_history()[0], wm(1))
        log: list[Any] = []
        started: list[DisposableBase] = []

        def on_targets(
            changed: Any, store: Store = store, log: list[Any] = log, started: list[Any] = started
        ) -> None:
            log.append(("targets", _changes(changed)))
            if not started:
                zones = store.of(entities_pb2.Zone)
                started.append(zones.changes.subscribe(lambda c, log=log: log.append(("zones", _changes(c)))))  # type: ignore[misc]

        store.of(Target).changes.subscribe(on_targets)
        reset(store, snapshot, wm(1000))
        logs[how] = log
    assert ("zones", [("zone-1", zone.SerializeToString(deterministic=True))]) in logs["events"]
    assert logs["bulk"] == logs["events"] and logs["columns"] == logs["events"]


def test_types_are_notified_in_the_event_path_s_order() -> None:
    zone = entities_pb2.Zone(name="Z")
    zone.item.id = "zone-1"
    history = [[set_ev(target("t1", "x"), 1)]]
    later_zone = entities_pb2.Zone(name="Z2")
    later_zone.item.id = "zone-2"
    for snapshot in (
        [
            set_ev(zone, 5, type_name=ZONE),
            set_ev(target("t1", "x"), 1),
            set_ev(target("t2", "y"), 6),
        ],  # nothing gone
        [set_ev(zone, 5, type_name=ZONE)],  # Targets gone: their DELs come first
    ):
        compare(history, snapshot, [[set_ev(later_zone, 9, type_name=ZONE)]])


def test_the_columns_repo_svc_writes_load_what_its_store_holds() -> None:
    source = Store(registry())
    events = [
        set_ev(target(f"t{i:05d}", f"n{i}", zone=f"z{i % 3}"), i // 2, partition=i % 2) for i in range(20_000)
    ]
    zone = entities_pb2.Zone(name="Z")
    zone.item.id = "zone-1"
    source.apply_events([*events, set_ev(zone, 5, type_name=ZONE)], wm(10_001))
    expected = {
        name: (dict(source.repo(name)._bytes), dict(source.repo(name)._positions)) for name in (TOPIC, ZONE)
    }
    written = snapshot_column_chunks(source, [TOPIC, ZONE], source.watermark.to_proto())
    # Batches applied while the frames are being written (repo_svc sends them as they
    # are written) are not in them: the subscriber gets those as change batches.
    source.apply_events([set_ev(target("t00003", "later"), 99_999), del_ev("t00004", 100_000)], wm(100_001))
    frames = list(written)
    assert len(frames) == 4  # 8192 entities a frame
    gathered = SnapshotGather()
    for frame in frames:
        gathered.add(repo_pb2.RepoChange.FromString(frame))
    mirror = new_store()
    gathered.load_into(mirror, wm(10_001))
    for name in (TOPIC, ZONE):
        assert (mirror.repo(name)._bytes, mirror.repo(name)._positions) == expected[name]
    assert mirror.watermark == wm(10_001)
    assert [i for _, i in mirror.of(Target).kept_order(by_name) or []][:3] == ["t00000", "t00001", "t00010"]


def test_a_mirror_loads_the_event_frames_of_a_repo_svc_without_columns_the_same() -> None:
    """A repo_svc that predates snapshot_columns ignores the request and sends events."""
    source = Store(registry())
    source.apply_events(
        [set_ev(target(f"t{i}", f"n{i}", zone=f"z{i % 3}"), i, partition=i % 2) for i in range(1200)],
        wm(1200),
    )
    mirrors = []
    for write in (snapshot_chunks, snapshot_column_chunks):
        gathered = SnapshotGather()
        for frame in write(source, [TOPIC, ZONE], source.watermark.to_proto()):
            gathered.add(repo_pb2.RepoChange.FromString(frame))
        assert bool(gathered.events) == (write is snapshot_chunks)
        mirror = new_store()
        gathered.load_into(mirror, source.watermark)
        mirrors.append(state(mirror))
    assert mirrors[0] == mirrors[1]
    assert len(mirrors[0][TOPIC]["bytes"]) == 1200


def test_large_entities_go_in_smaller_column_messages() -> None:
    source = Store(registry())
    big = [target(f"t{i}", "x" * 300_000) for i in range(60)]
    source.apply_events([set_ev(t, i) for i, t in enumerate(big)], wm(60))
    frames = list(snapshot_column_chunks(source, [TOPIC], source.watermark.to_proto()))
    assert len(frames) > 2 and max(map(len, frames)) < 9 * 1024 * 1024
    gathered = SnapshotGather()
    for frame in frames:
        gathered.add(repo_pb2.RepoChange.FromString(frame))
    mirror = new_store()
    gathered.load_into(mirror, source.watermark)
    assert mirror.of(Target)._bytes == source.of(Target)._bytes


def test_a_store_that_keeps_events_does_not_load_columns() -> None:
    with pytest.raises(ValueError, match="keeps events"):
        Store(registry()).load_snapshot({}, wm(1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from([f"t{i}" for i in range(10)]), st.booleans(), st.integers(0, 3)),
        max_size=30,
    ),
    st.lists(st.tuples(st.sampled_from([f"t{i}" for i in range(14)]), st.integers(0, 3)), max_size=14),
    st.booleans(),
)
def test_any_history_and_snapshot_reset_the_same_by_every_path(
    history: list[tuple[str, bool, int]], snapshot: list[tuple[str, int]], read_orders: bool
) -> None:
    """Random histories of SETs and DELs, then a random snapshot (unchanged, changed, new and
    gone entities; names and scores that tie)."""
    names = ["a", "B", "b", "c"]
    events = []
    for offset, (tid, is_set, v) in enumerate(history):
        if is_set:
            events.append(
                set_ev(target(tid, names[v], zone=f"z{v % 2}", status=1 + v % 2, score=v % 2), offset)
            )
        else:
            events.append(del_ev(tid, offset))
    seen: dict[str, item_pb2.Event] = {}
    for n, (tid, v) in enumerate(snapshot):
        seen.setdefault(
            tid, set_ev(target(tid, names[v], zone=f"z{v % 2}", status=1 + v % 2, score=v), 100 + n)
        )
    later = [[set_ev(target("t1", "z"), 500)], [del_ev("t2", 501)]]
    compare(
        [events[i : i + 5] for i in range(0, len(events), 5)],
        list(seen.values()),
        later,
        read_orders=read_orders,
    )
