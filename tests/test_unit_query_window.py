"""Unit tests: query windows (top-N and pages) kept over a Store, in memory and virtual time."""

from __future__ import annotations

import asyncio
import random
from typing import Any, cast

import pytest
from reactivex import Observable
from reactivex.notification import OnNext
from reactivex.testing import TestScheduler
from target_store import registry
from targets.v1 import entities_pb2, queries_pb2
from test_unit_repo import del_ev, set_ev, wm

from myko import Handlers, InvalidArgument, Store, Window
from myko.errors import ConfigError
from myko.live_bus import SharedOrders
from myko.query_window import OrderedMatches, SharedOrder, WindowResult, WindowSpec

Target = entities_pb2.Target
ACTIVE = entities_pb2.TARGET_STATUS_ACTIVE
PAUSED = entities_pb2.TARGET_STATUS_PAUSED


def scored(tid: str, score: float, status: int = ACTIVE, version: int = 1) -> Target:
    t = Target(name=f"n-{tid}", score=score, status=status)  # type: ignore[arg-type]
    t.item.id = tid
    t.item.type = "targets.v1.Target"
    t.item.version = version
    return t


def by_score(t: Target) -> float:
    return -t.score


def ids(result: WindowResult[Target]) -> list[str]:
    return [t.item.id for t in result.items]


def expected(entities: dict[str, Target], spec: WindowSpec) -> list[str]:
    """The window by the definition: sort everything (order key, then id), slice."""
    ordered = sorted(entities.values(), key=lambda t: (by_score(t), t.item.id))
    return [t.item.id for t in ordered[spec.offset : spec.offset + spec.limit]]


class Feed:
    """A store fed one batch at a time, with offsets and watermarks handled."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.offset = 0

    def set(self, *targets: Target) -> None:
        events = []
        for t in targets:
            events.append(set_ev(t, self.offset))
            self.offset += 1
        self.store.apply_events(events, wm(self.offset))

    def delete(self, *tids: str) -> None:
        self.batch([], list(tids))

    def batch(self, sets: list[Target], dels: list[str]) -> None:
        """Deletes and sets applied as one batch (one emission at most)."""
        events = []
        for tid in dels:
            events.append(del_ev(tid, self.offset))
            self.offset += 1
        for t in sets:
            events.append(set_ev(t, self.offset))
            self.offset += 1
        self.store.apply_events(events, wm(self.offset))


def watch_window(
    store: Store, spec: WindowSpec, *, total: bool = True, status: int | None = None
) -> list[WindowResult[Target]]:
    got: list[WindowResult[Target]] = []
    where = None if status is None else (lambda t: t.status == status)
    store.of(Target).watch(where=where, order_by=by_score).windowed(spec, total=total).subscribe(got.append)
    return got


@pytest.mark.parametrize("spec", [WindowSpec(0, 5), WindowSpec(7, 5), WindowSpec(0, 1), WindowSpec(38, 10)])
def test_the_window_is_always_the_slice_of_the_full_order(spec: WindowSpec) -> None:
    """Random changes with many ties (scores from a few values), deletes, re-creations and
    large batches: after every batch the window equals sort-then-slice of everything."""
    rng = random.Random(11)
    store = Store(registry())
    feed = Feed(store)
    got = watch_window(store, spec)
    state: dict[str, Target] = {}
    version: dict[str, int] = {}
    for step in range(300):
        size = 60 if step % 50 == 49 else rng.randint(1, 4)  # now and then a batch big enough to re-sort
        batch_sets: dict[str, Target] = {}
        batch_dels: list[str] = []
        for _ in range(size):
            tid = f"t{rng.randint(0, 45):02d}"
            if tid in state and rng.random() < 0.25:
                batch_dels.append(tid)
                state.pop(tid)
                batch_sets.pop(tid, None)
            else:
                version[tid] = version.get(tid, 0) + 1
                t = scored(tid, float(rng.choice([1, 2, 3, 5])), version=version[tid])
                state[tid] = t
                batch_sets[tid] = t
                if tid in batch_dels:
                    batch_dels.remove(tid)
        if batch_dels:
            feed.delete(*batch_dels)
        if batch_sets:
            feed.set(*batch_sets.values())
        assert ids(got[-1]) == expected(state, spec), f"step {step}"
        assert got[-1].total == len(state)
        assert got[-1].offset == spec.offset


def test_ties_are_ordered_by_id() -> None:
    store = Store(registry())
    feed = Feed(store)
    feed.set(scored("c", 1), scored("a", 1), scored("b", 1), scored("z", 9))
    got = watch_window(store, WindowSpec(0, 3))
    assert ids(got[-1]) == ["z", "a", "b"]


def test_a_change_after_the_window_emits_nothing_and_sorts_nothing() -> None:
    """Top 3 of 200: changing, adding or deleting low scorers leaves the window alone, and costs
    one order key per changed entity (no re-sort of the matches)."""
    store = Store(registry())
    feed = Feed(store)
    feed.set(*[scored(f"t{i:03d}", float(i)) for i in range(200)])
    calls = 0

    def counting(t: Target) -> float:
        nonlocal calls
        calls += 1
        return -t.score

    got: list[WindowResult[Target]] = []
    store.of(Target).watch(order_by=counting).windowed(WindowSpec(0, 3), total=False).subscribe(got.append)
    assert ids(got[-1]) == ["t199", "t198", "t197"]
    calls = 0
    feed.set(scored("t005", 6.5, version=2))  # moves, but far below the window
    feed.set(scored("new", 0.5))
    feed.delete("t010")
    assert len(got) == 1
    assert calls == 2  # one key for each changed entity; none for the other 199
    # Entering the window: emitted, the old third falls out.
    feed.set(scored("t004", 500.0, version=2))
    assert ids(got[-1]) == ["t004", "t199", "t198"]
    # An update inside the window that keeps its place is still a new array.
    feed.set(scored("t199", 199.0, version=2))
    assert len(got) == 3 and got[-1].items[1].item.version == 2


def test_a_change_before_a_page_shifts_it() -> None:
    store = Store(registry())
    feed = Feed(store)
    feed.set(*[scored(f"t{i}", float(i)) for i in range(10)])  # order: t9 t8 ... t0
    got = watch_window(store, WindowSpec(2, 3))
    assert ids(got[-1]) == ["t7", "t6", "t5"]
    feed.delete("t9")  # before the page: everything moves up one
    assert ids(got[-1]) == ["t6", "t5", "t4"] and got[-1].total == 9
    feed.set(scored("top", 100.0))  # before the page again: down one
    assert ids(got[-1]) == ["t7", "t6", "t5"] and got[-1].total == 10
    feed.delete("t6")  # inside
    assert ids(got[-1]) == ["t7", "t5", "t4"]
    # After the page: the items stay, but the total moved, so a counted window emits.
    n = len(got)
    feed.set(scored("low", -1.0))
    assert len(got) == n + 1 and ids(got[-1]) == ["t7", "t5", "t4"] and got[-1].total == 10


def test_entities_enter_and_leave_by_the_filter() -> None:
    store = Store(registry())
    feed = Feed(store)
    feed.set(scored("a", 3), scored("b", 2), scored("c", 1, PAUSED))
    got = watch_window(store, WindowSpec(0, 2), status=ACTIVE)
    assert ids(got[-1]) == ["a", "b"] and got[-1].total == 2
    feed.set(scored("c", 5, ACTIVE, version=2))  # becomes active: enters at the top
    assert ids(got[-1]) == ["c", "a"] and got[-1].total == 3
    feed.set(scored("a", 3, PAUSED, version=2))  # leaves
    assert ids(got[-1]) == ["c", "b"] and got[-1].total == 2
    n = len(got)
    feed.set(scored("x", 9, PAUSED))  # never matched: nothing
    assert len(got) == n


def test_a_short_result_and_a_page_past_the_end() -> None:
    store = Store(registry())
    feed = Feed(store)
    feed.set(scored("a", 1), scored("b", 2))
    assert ids(watch_window(store, WindowSpec(0, 10))[-1]) == ["b", "a"]
    past = watch_window(store, WindowSpec(5, 10))
    assert past[-1].items == [] and past[-1].total == 2
    feed.set(*[scored(f"t{i}", 0.0) for i in range(5)])
    assert ids(past[-1]) == ["t3", "t4"] and past[-1].total == 7  # b a t0 t1 t2 | t3 t4


def test_a_window_in_virtual_time() -> None:
    scheduler = TestScheduler()
    store = Store(registry())
    feed = Feed(store)
    scheduler.schedule_absolute(300, lambda *_: feed.set(scored("a", 1)))
    scheduler.schedule_absolute(350, lambda *_: feed.set(scored("b", 0)))  # after the top 1: nothing
    scheduler.schedule_absolute(400, lambda *_: feed.set(scored("c", 2)))
    scheduler.schedule_absolute(500, lambda *_: feed.delete("c"))

    observer = scheduler.start(
        lambda: store.of(Target).watch(order_by=by_score).windowed(WindowSpec(0, 1), total=False),
        created=100,
        subscribed=200,
        disposed=600,
    )
    seen = [(m.time, ids(cast(OnNext[WindowResult[Target]], m.value).value)) for m in observer.messages]
    assert seen == [(200, []), (300, ["a"]), (400, ["c"]), (500, ["a"])]


def test_ordered_matches_report_the_lowest_position_that_moved() -> None:
    matches = OrderedMatches({f"t{i}": scored(f"t{i}", float(i)) for i in range(20)}, by_score)
    assert [t.item.id for t in matches.slice(0, 2)] == ["t19", "t18"]
    assert matches.apply({"t3": scored("t3", 4.0, version=2)}) == 15  # t4 t3 at 15, 16 now
    assert matches.apply({"t3": None}) == 15
    assert matches.apply({"nobody": None}) is None  # not a match before either
    assert matches.apply({"t19": None}) == 0
    assert "t19" not in matches and len(matches) == 18


def test_a_first_window_sorts_only_what_it_shows() -> None:
    """The first page of 2,000 matches holds a partial selection (its rows and a spare),
    not a sort of all of them; ties on the last held key all come along, so the id
    still orders them exactly."""
    entities = {f"t{i:04d}": scored(f"t{i:04d}", float(i % 500)) for i in range(2000)}  # 4 ties a score
    matches = OrderedMatches(dict(entities), by_score, upto=10)
    assert 10 <= matches.held < 200
    top = [t.item.id for t in matches.slice(0, 10)]
    assert top == expected(entities, WindowSpec(0, 10))
    assert top[:4] == ["t0499", "t0999", "t1499", "t1999"]  # score 499: four ties, by id
    # A page beyond the held positions extends the selection; a page past most of
    # the order sorts the rest once.
    assert [t.item.id for t in matches.slice(150, 20)] == expected(entities, WindowSpec(150, 20))
    assert matches.held < 2000
    assert [t.item.id for t in matches.slice(1500, 600)] == expected(entities, WindowSpec(1500, 600))
    assert matches.held == 2000


@pytest.mark.parametrize("seed", [3, 17])
def test_a_partial_order_stays_exact_through_random_changes(seed: int) -> None:
    """Over a partial selection (top-N and pages beyond the first, one shared order): random
    inserts, moves across the held boundary, deletes concentrated on the top (so the held
    positions run out and are selected again), equal keys, and now and then a batch big
    enough to select everything again. After each batch every window equals sort-then-slice
    of everything, and a window the batch did not touch emitted nothing."""
    rng = random.Random(seed)
    store = Store(registry())
    feed = Feed(store)
    state = {f"t{i:04d}": scored(f"t{i:04d}", float(rng.randint(0, 150))) for i in range(2000)}
    feed.set(*state.values())
    version = {tid: 1 for tid in state}
    order = store.of(Target).watch(order_by=by_score).ordered()
    specs = [WindowSpec(0, 5), WindowSpec(5, 5), WindowSpec(40, 20)]
    got: list[list[WindowResult[Target]]] = [[] for _ in specs]
    for spec, seen in zip(specs, got, strict=True):
        order.window(spec, total=False).subscribe(seen.append)
    next_id = 2000

    def in_order() -> list[str]:  # sort-then-slice's order, by a cheap key
        return sorted(state, key=lambda tid: (-state[tid].score, tid))

    for step in range(250):
        before = [list(seen) for seen in got]
        size = 200 if step % 60 == 59 else rng.randint(1, 5)
        top = in_order()[:80]
        sets: dict[str, Target] = {}
        dels: set[str] = set()
        for _ in range(size):
            roll = rng.random()
            if roll < 0.3 and top:  # delete one near the top
                tid = rng.choice(top)
                if tid in state:
                    del state[tid]
                    dels.add(tid)
                    sets.pop(tid, None)
                continue
            if roll < 0.45:  # a new one, anywhere
                tid = f"n{next_id:05d}"
                next_id += 1
            else:  # move an existing one (up, down, across the boundary, or same key)
                tid = rng.choice(list(state))
            version[tid] = version.get(tid, 0) + 1
            t = scored(tid, float(rng.randint(0, 150)), version=version[tid])
            state[tid] = t
            sets[tid] = t
            dels.discard(tid)
        feed.batch(list(sets.values()), sorted(dels))
        order_now = in_order()
        for spec, seen, was in zip(specs, got, before, strict=True):
            assert ids(seen[-1]) == order_now[spec.offset : spec.end], f"step {step}, {spec}"
            assert len(seen) - len(was) <= 1  # at most one emission per applied batch
            if ids(was[-1]) == ids(seen[-1]) and all(
                a is b for a, b in zip(was[-1].items, seen[-1].items, strict=True)
            ):
                assert len(seen) == len(was), f"step {step}, {spec}: emitted an unchanged window"
    late = list[WindowResult[Target]]()
    order.window(WindowSpec(500, 10), total=False).subscribe(late.append)  # a page far beyond
    assert ids(late[-1]) == expected(state, WindowSpec(500, 10))


def test_a_change_past_the_held_positions_moves_nothing() -> None:
    matches = OrderedMatches(
        {f"t{i:04d}": scored(f"t{i:04d}", float(i)) for i in range(1000)}, by_score, upto=3
    )
    held = matches.held
    assert held < 1000 and [t.item.id for t in matches.slice(0, 3)] == ["t0999", "t0998", "t0997"]
    # t0005 is far past the held positions, before and after: no held position moves.
    assert matches.apply({"t0005": scored("t0005", 7.0, version=2)}) == held
    assert matches.apply({"t0006": None}) == held
    # Into the top from past the held ones, and out again.
    assert matches.apply({"t0007": scored("t0007", 5000.0, version=2)}) == 0
    assert matches.held == held + 1
    assert matches.apply({"t0007": scored("t0007", 7.0, version=3)}) == 0
    assert [t.item.id for t in matches.slice(0, 3)] == ["t0999", "t0998", "t0997"]
    # Deleting every held one: the next are selected when a window asks.
    assert matches.apply({f"t{i:04d}": None for i in range(1000 - held, 1000)}) == 0
    assert [t.item.id for t in matches.slice(0, 3)] == [
        f"t{i:04d}" for i in (999 - held, 998 - held, 997 - held)
    ]


def test_pages_of_one_order_share_it_and_emit_only_when_touched() -> None:
    """Page 1 and page 2 over one SharedOrder: one sort, and each page emits only for its rows."""
    store = Store(registry())
    feed = Feed(store)
    feed.set(*[scored(f"t{i:02d}", float(i)) for i in range(10)])  # t09 t08 ... t00
    calls = 0

    def counting(t: Target) -> float:
        nonlocal calls
        calls += 1
        return -t.score

    idle: list[SharedOrder[Target]] = []
    order = store.of(Target).watch(order_by=counting).ordered(on_idle=idle.append)
    page1: list[WindowResult[Target]] = []
    page2: list[WindowResult[Target]] = []
    d1 = order.window(WindowSpec(0, 3), total=False).subscribe(page1.append)
    d2 = order.window(WindowSpec(3, 3), total=False).subscribe(page2.append)
    assert calls == 10  # one key per match, for both pages
    assert ids(page1[-1]) == ["t09", "t08", "t07"] and ids(page2[-1]) == ["t06", "t05", "t04"]
    feed.set(scored("t05", 5.0, version=2))  # inside page 2 only
    assert (len(page1), len(page2)) == (1, 2)
    feed.set(scored("t01", 1.0, version=2))  # after both
    assert (len(page1), len(page2)) == (1, 2)
    feed.delete("t08")  # inside page 1: page 2 shifts as well
    assert ids(page1[-1]) == ["t09", "t07", "t06"] and ids(page2[-1]) == ["t05", "t04", "t03"]
    d1.dispose()
    assert idle == []
    d2.dispose()
    assert idle == [order] and order.windows == 0
    order.close()
    feed.set(scored("t09", 99.0, version=2))  # closed: followed no more
    assert len(page1) == 2


# --- declaring a window -------------------------------------------------------


def test_a_declared_window_is_checked_at_registration() -> None:
    h = Handlers()

    def handler(q: Any, repos: Store) -> Observable[list[Target]]:
        return repos.of(Target).watch()

    with pytest.raises(ConfigError, match="'size' must be a singular integer field"):
        h.query(queries_pb2.TopTargets, window=Window(max_limit=10, limit_field="size"))(handler)
    with pytest.raises(ConfigError, match="'status'"):
        h.query(queries_pb2.TargetsPage, window=Window(max_limit=10, offset_field="status"))  # an enum
    with pytest.raises(ConfigError, match="max_limit"):
        h.query(queries_pb2.TopTargets, window=Window(max_limit=0))
    with pytest.raises(ConfigError, match="default_limit"):
        h.query(queries_pb2.TopTargets, window=Window(max_limit=10, default_limit=11))
    h.query(queries_pb2.TopTargets, window=Window(max_limit=10))(handler)
    reg = h.declared_queries.get("targets.v1.TopTargets")
    assert reg is not None and reg.window == Window(max_limit=10)


def test_a_request_past_the_bounds_is_invalid_argument() -> None:
    page = Window(max_limit=500, default_limit=50, offset_field="offset", max_offset=1000)
    assert page.of(queries_pb2.TargetsPage()) == WindowSpec(0, 50)
    assert page.of(queries_pb2.TargetsPage(offset=1000, limit=500)) == WindowSpec(1000, 500)
    with pytest.raises(InvalidArgument, match="limit"):
        page.of(queries_pb2.TargetsPage(limit=10_000_000))
    with pytest.raises(InvalidArgument, match="offset"):
        page.of(queries_pb2.TargetsPage(offset=1001))
    # Equal windows, however asked, have one evaluation key.
    asked = queries_pb2.TargetsPage(limit=0)
    page.normalise(asked, page.of(asked))
    assert asked == queries_pb2.TargetsPage(limit=50)


async def test_an_idle_order_is_kept_for_the_next_page_then_dropped() -> None:
    """query_svc's SharedOrders: the last window leaving keeps the order `linger_s`, so the
    next page reuses it; after that the order is closed and forgotten."""
    store = Store(registry())
    Feed(store).set(*[scored(f"t{i}", float(i)) for i in range(5)])
    orders = SharedOrders(linger_s=0.05)
    order = orders.start("key", store.of(Target).watch(order_by=by_score))
    page1: list[WindowResult[Target]] = []
    order.window(WindowSpec(0, 2)).subscribe(page1.append).dispose()
    assert orders.get("key") is order  # idle, but kept for a moment
    page2: list[WindowResult[Target]] = []
    sub = order.window(WindowSpec(2, 2)).subscribe(page2.append)  # the next page: same order
    await asyncio.sleep(0.1)
    assert orders.get("key") is order and ids(page2[-1]) == ["t2", "t1"]
    sub.dispose()
    await asyncio.sleep(0.1)
    assert orders.get("key") is None and len(orders) == 0
