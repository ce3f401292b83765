"""Unit tests: declared orders kept by the store (myko/kept_order.py) give exactly what
sorting from scratch gives: the order itself, full-array watches and windows, under random
sequences of creates, changes that move entities across the order, and deletes."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from target_store import registry
from targets.v1 import entities_pb2, queries_pb2
from test_unit_query_window import Feed, scored
from test_unit_repo import set_ev, wm

import myko.kept_order
import myko.repo
from myko import Handlers, Store
from myko.entity_array import EntityArray
from myko.errors import ConfigError
from myko.query_result_encoder import QueryResultEncoder
from myko.query_window import WindowResult, WindowSpec
from myko.v1 import item_pb2

Target = entities_pb2.Target
ACTIVE = entities_pb2.TARGET_STATUS_ACTIVE
PAUSED = entities_pb2.TARGET_STATUS_PAUSED
TARGET = "targets.v1.Target"


def by_score(t: Target) -> float:
    """Few distinct values: many ties, which the kept order breaks by id."""
    return -t.score


def by_score_then_id(t: Target) -> tuple[float, str]:
    """The same order, undeclared: what sorting from scratch gives."""
    return (-t.score, t.item.id)


def kept_store(*, indexes: bool = True) -> Store:
    return Store(
        registry(),
        indexes={TARGET: ["status"]} if indexes else None,
        orders={TARGET: [by_score]},
    )


def random_batches(rng: random.Random, steps: int, ids: int) -> Any:
    """(sets, deletes) batches: creates, score and status changes (moves in the order,
    in and out of a selection), deletes and re-creations; now and then a large batch."""
    state: dict[str, Target] = {}
    version: dict[str, int] = {}
    for step in range(steps):
        size = ids // 2 if step % 40 == 39 else rng.randint(1, 5)
        sets: dict[str, Target] = {}
        dels: list[str] = []
        for _ in range(size):
            tid = f"t{rng.randrange(ids):03d}"
            if tid in state and rng.random() < 0.25:
                if tid not in sets:
                    dels.append(tid)
                    del state[tid]
                continue
            if tid in dels:
                continue
            version[tid] = version.get(tid, 0) + 1
            status = ACTIVE if rng.random() < 0.6 else PAUSED
            sets[tid] = state[tid] = scored(tid, float(rng.randrange(6)), status, version[tid])
        yield list(sets.values()), dels, dict(state)


@pytest.fixture(params=[1000, 3], ids=["blocks-of-1000", "blocks-of-3"])
def block_size(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Small blocks: splits, emptied blocks and walks across blocks happen all the time."""
    monkeypatch.setattr(myko.kept_order, "_LOAD", request.param)
    return int(request.param)


@pytest.fixture(params=[1, 16], ids=["bytes-found-one-by-one", "bytes-taken-again"])
def refresh_share(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """How a read takes the bytes changed in place: by a bisection each (until they are as
    many as the order holds), or every block's bytes again (a few changes in a small order)."""
    monkeypatch.setattr(myko.kept_order, "_REFRESH_SHARE", request.param)
    return int(request.param)


def test_the_kept_order_is_always_the_sorted_order_of_every_entity(
    block_size: int, refresh_share: int
) -> None:
    """Its (key, id) pairs, and the bytes it hands a new evaluation: the store's current
    bytes (the same objects) in that order, of every entity or of a selection; after
    creates, moves, deletes and changes that keep an entity's place (a new version, a
    new status: new bytes under the same key)."""
    rng = random.Random(5)
    store = kept_store()
    feed = Feed(store)
    repo = store.of(Target)
    for sets, dels, state in random_batches(rng, 300, 80):
        feed.batch(sets, dels)
        if rng.random() < 0.7:  # reads now and then: pending changes merge in several ways
            kept = repo.kept_order(by_score)
            assert kept is not None
            want = sorted((by_score(t), i) for i, t in state.items())
            assert list(kept) == want
            encodings = kept.encodings()
            assert encodings == [state[i].SerializeToString() for _, i in want]
            assert all(e is repo.encoded(i) for e, (_, i) in zip(encodings, want, strict=True))
            active = {i for i, t in state.items() if t.status == ACTIVE}
            assert kept.encodings(active) == [repo.encoded(i) for _, i in want if i in active]


@pytest.mark.parametrize("reads", ["every batch", "at the end"])
def test_a_change_that_keeps_the_place_replaces_the_bytes_a_new_evaluation_gets(
    reads: str, block_size: int, refresh_share: int
) -> None:
    """A new version under the same key, alone or with other changes in its batch,
    merged or still pending, many at once (more than an eighth of the order)."""
    store = kept_store()
    feed = Feed(store)
    repo = store.of(Target)
    feed.set(*[scored(f"t{i:03d}", float(i % 4)) for i in range(40)])
    assert repo.kept_order(by_score) is not None  # built and merged
    changes: list[list[Target]] = [
        [scored("t005", 1.0, version=2)],  # same key, new bytes
        [scored("t006", 2.0, PAUSED, version=2), scored("t100", 1.0)],  # a new one beside it
        [scored("t100", 1.0, PAUSED, version=2)],  # pending or merged, same key again
        [scored(f"t{i:03d}", float(i % 4), version=3) for i in range(0, 40, 2)],  # half of them
        [scored("t007", 3.0, version=2), scored("t007", 3.0, version=3)],  # twice in a batch
    ]
    for batch in changes:
        feed.set(*batch)
        if reads == "every batch":
            got: list[list[Target]] = []
            repo.watch(order_by=by_score).subscribe(got.append).dispose()
            assert list(got[0]) == sorted(repo.all(), key=by_score_then_id)
    want = sorted(repo.all(), key=by_score_then_id)
    kept = repo.kept_order(by_score)
    assert kept is not None
    assert kept.encodings() == [t.SerializeToString() for t in want]
    versions = {t.item.id: t.item.version for t in want}
    assert [versions[i] for i in ("t005", "t006", "t007", "t100", "t011")] == [2, 3, 3, 2, 1]


def test_a_snapshot_reset_that_keeps_the_order_replaces_the_bytes_too() -> None:
    """The bulk reset changes a built order entity by entity (a small difference): the
    bytes of a changed entity in its place are the new ones."""
    store = kept_store()
    feed = Feed(store)
    repo = store.of(Target)
    feed.set(*[scored(f"t{i:03d}", float(i % 4)) for i in range(40)])
    assert repo.kept_order(by_score) is not None
    current = {t.item.id: t for t in repo.all()}
    current["t003"] = scored("t003", 3.0, PAUSED, version=2)  # same key
    current["t004"] = scored("t004", 9.0, version=2)  # moves
    del current["t005"]
    snapshot = [set_ev(t, 100 + n) for n, t in enumerate(current.values())]
    store.reset(snapshot, wm(200))
    order = repo._orders[by_score]
    assert order.built  # changed entity by entity, not dropped
    kept = repo.kept_order(by_score)
    assert kept is not None
    want = sorted(current.values(), key=by_score_then_id)
    assert kept.encodings() == [t.SerializeToString() for t in want]


def test_a_bulk_load_drops_the_order_and_the_next_read_sorts_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(myko.repo, "BULK_EVENTS", 20)
    store = kept_store()
    feed = Feed(store)
    repo = store.of(Target)
    order = repo._orders[by_score]
    feed.set(*[scored(f"t{i:03d}", float(i % 7)) for i in range(50)])  # a bulk load: nothing kept
    assert not order.built
    kept = repo.kept_order(by_score)
    assert kept is not None and order.built
    expected = sorted((-float(i % 7), f"t{i:03d}") for i in range(50))
    assert list(kept) == expected
    feed.set(scored("t003", 99.0, version=2))  # small batches are kept change by change
    assert order.built
    assert next(iter(kept)) == (-99.0, "t003")


@pytest.mark.parametrize("status", [None, ACTIVE])
def test_a_declared_watch_emits_what_sorting_from_scratch_emits(
    status: int | None, monkeypatch: pytest.MonkeyPatch, block_size: int
) -> None:
    """The same emissions, one for one, as an undeclared watch of the same order; the
    declared one served from the kept order (selections are large enough)."""
    monkeypatch.setattr(myko.repo, "_SMALL_SHARE", 10**6)  # any selection walks the kept order
    rng = random.Random(7)
    store = kept_store()
    feed = Feed(store)
    equal = {} if status is None else {"status": status}
    declared: list[list[Target]] = []
    plain: list[list[Target]] = []
    store.of(Target).watch(equal=equal, order_by=by_score).subscribe(declared.append)
    store.of(Target).watch(equal=equal, order_by=by_score_then_id).subscribe(plain.append)
    for sets, dels, state in random_batches(rng, 300, 60):
        feed.batch(sets, dels)
        assert len(declared) == len(plain)
        want = sorted(
            (t for t in state.values() if status is None or t.status == status), key=by_score_then_id
        )
        assert [t.item.id for t in declared[-1]] == [t.item.id for t in want]
        assert declared[-1].encodings == [t.SerializeToString() for t in want]  # type: ignore[attr-defined]
        assert list(declared[-1]) == plain[-1] == want
    assert all(type(a) is EntityArray for a in declared)


def test_a_declared_watch_of_a_small_selection_sorts_it_with_ties_by_id() -> None:
    store = kept_store()
    feed = Feed(store)
    feed.set(*[scored(f"t{i:03d}", 1.0, ACTIVE if i % 50 else PAUSED) for i in range(100, 0, -1)])
    got: list[list[Target]] = []
    store.of(Target).watch(equal={"status": PAUSED}, order_by=by_score).subscribe(got.append)
    assert [t.item.id for t in got[-1]] == ["t050", "t100"]
    feed.set(scored("t001", 1.0, PAUSED, version=2))
    assert [t.item.id for t in got[-1]] == ["t001", "t050", "t100"]


def test_a_new_evaluation_decodes_nothing_and_encodes_the_stored_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = kept_store()
    feed = Feed(store)
    feed.set(*[scored(f"t{i:03d}", float(i % 3)) for i in range(40)])
    repo = store.of(Target)
    repo.kept_order(by_score)  # merged: what a later new evaluation finds
    decoded: list[int] = []
    batch = repo._decode_batch

    def counting(encodings: Any) -> Any:
        decoded.append(len(list(encodings)))
        return batch(encodings)

    monkeypatch.setattr(repo, "_decode_batch", counting)
    got: list[list[Target]] = []
    repo.watch(order_by=by_score).subscribe(got.append).dispose()
    array = got[0]
    assert type(array) is EntityArray and array.encodings is not None
    assert len(array) == 40
    wm = item_pb2.Watermark()
    encoded = QueryResultEncoder("q").encode(array, wm, 1)
    assert decoded == []  # neither the evaluation nor its encoding decoded an entity
    want = sorted((scored(f"t{i:03d}", float(i % 3)) for i in range(40)), key=by_score_then_id)
    assert encoded == QueryResultEncoder("q").encode(list(want), wm, 1)
    assert list(array) == want and decoded == [40]  # reading it decodes, once
    assert array[0] == want[0] and array == want and want == array


def test_a_deferred_array_is_a_list_to_whoever_reads_it() -> None:
    targets = [scored(f"t{i}", float(i)) for i in range(3)]
    array = EntityArray.deferred(
        [t.SerializeToString() for t in targets], "type.googleapis.com/targets.v1.Target", _decode_all
    )
    assert len(array) == 3 and bool(array)
    assert [*array] == targets and array[1] == targets[1] and targets[2] in array
    assert array + [] == targets and [] + array == targets  # noqa: RUF005 (the list operators are the point)
    assert list(reversed(array)) == targets[::-1]
    changed = EntityArray.deferred(array.encodings or [], array.type_url, _decode_all)
    changed.append(scored("t9", 9.0))  # a change to the list drops the encodings, keeps the items
    assert changed.encodings is None and [t.item.id for t in changed] == ["t0", "t1", "t2", "t9"]


def _decode_all(encodings: list[bytes]) -> list[Target]:
    return [Target.FromString(e) for e in encodings]


@pytest.mark.parametrize("spec", [WindowSpec(0, 5), WindowSpec(7, 5), WindowSpec(0, 1), WindowSpec(30, 10)])
@pytest.mark.parametrize("status", [None, ACTIVE])
def test_a_declared_window_shows_what_sorting_from_scratch_shows(
    spec: WindowSpec, status: int | None, monkeypatch: pytest.MonkeyPatch, block_size: int
) -> None:
    """After every batch the window (items, offset, total) equals today's OrderedMatches over
    the same order; and it emits only when what it shows changed."""
    monkeypatch.setattr(myko.repo, "_SMALL_SHARE", 10**6)
    rng = random.Random(13 + spec.offset)
    store = kept_store()
    feed = Feed(store)
    equal = {} if status is None else {"status": status}
    declared: list[WindowResult[Target]] = []
    plain: list[WindowResult[Target]] = []
    store.of(Target).watch(equal=equal, order_by=by_score).windowed(spec).subscribe(declared.append)
    store.of(Target).watch(equal=equal, order_by=by_score_then_id).windowed(spec).subscribe(plain.append)
    for sets, dels, state in random_batches(rng, 300, 60):
        feed.batch(sets, dels)
        want = sorted(
            (t for t in state.values() if status is None or t.status == status), key=by_score_then_id
        )
        last = declared[-1]
        assert last.items == want[spec.offset : spec.end] == plain[-1].items
        assert last.total == len(want) == plain[-1].total and last.offset == spec.offset
    for before, after in itertools.pairwise(declared):
        assert (before.items, before.total) != (after.items, after.total)


def test_a_second_page_and_a_page_past_the_end_of_a_declared_order() -> None:
    store = kept_store()
    feed = Feed(store)
    feed.set(*[scored(f"t{i:03d}", float(i % 4)) for i in range(300)])
    order = store.of(Target).watch(order_by=by_score).ordered()
    pages: dict[int, list[WindowResult[Target]]] = {o: [] for o in (0, 150, 295, 400)}
    for offset, got in pages.items():
        order.window(WindowSpec(offset, 10)).subscribe(got.append)
    want = [t.item.id for t in sorted(store.of(Target).all(), key=by_score_then_id)]
    for offset, got in pages.items():
        assert [t.item.id for t in got[-1].items] == want[offset : offset + 10]
        assert got[-1].total == 300
    feed.delete("t003")  # score 3: the first position; every page moves by one
    want.remove("t003")
    for offset, got in pages.items():
        assert [t.item.id for t in got[-1].items] == want[offset : offset + 10]
        assert got[-1].total == 299


def test_an_order_whose_key_fails_stops_and_its_watches_sort_as_undeclared() -> None:
    def fragile(t: Target) -> float:
        if t.name == "bad":
            raise ValueError("no score for bad")
        return -t.score

    store = Store(registry(), indexes={TARGET: ["status"]}, orders={TARGET: [fragile]})
    feed = Feed(store)
    feed.set(*[scored(f"t{i:03d}", float(i)) for i in range(10)])
    got: list[list[Target]] = []
    window: list[WindowResult[Target]] = []
    watch = store.of(Target).watch(equal={"status": ACTIVE}, order_by=fragile)
    watch.subscribe(got.append)
    watch.windowed(WindowSpec(0, 3)).subscribe(window.append)
    bad = scored("t100", 50.0, PAUSED)
    bad.name = "bad"
    feed.set(bad)  # not in the selection, but the order cannot place it: it stops
    assert store.of(Target)._orders[fragile].broken
    feed.set(scored("t200", 100.0))
    assert [t.item.id for t in got[-1]][:2] == ["t200", "t009"]
    assert [t.item.id for t in window[-1].items] == ["t200", "t009", "t008"]
    later: list[list[Target]] = []
    store.of(Target).watch(equal={"status": ACTIVE}, order_by=fragile).subscribe(later.append)
    assert later[-1] == got[-1]


def test_a_query_declares_its_orders_and_they_must_be_key_functions() -> None:
    handlers = Handlers()

    @handlers.query(queries_pb2.AllTargets, order=[by_score])
    def all_targets(q: queries_pb2.AllTargets, repos: Store) -> Any:
        return repos.of(Target).watch(order_by=by_score)

    @handlers.query(queries_pb2.TopTargets, order=[by_score, by_score_then_id])
    def top(q: queries_pb2.TopTargets, repos: Store) -> Any:
        return repos.of(Target).watch(order_by=by_score)

    assert handlers.declared_orders == {TARGET: [by_score, by_score_then_id]}
    with pytest.raises(ConfigError, match="is not a key function"):
        handlers.query(queries_pb2.TargetsPage, order=["name"])  # type: ignore[list-item]


class _UnhashableKey:
    """A key object with equality and no hash: never a declared order, still a fine order_by."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _UnhashableKey)

    __hash__ = None  # type: ignore[assignment]

    def __call__(self, t: Target) -> float:
        return -t.score


def test_an_unhashable_key_sorts_as_undeclared_and_cannot_be_declared() -> None:
    store = kept_store()
    Feed(store).set(*[scored(f"t{i}", float(i)) for i in range(3)])
    got: list[list[Target]] = []
    store.of(Target).watch(order_by=_UnhashableKey()).subscribe(got.append)
    assert [t.item.id for t in got[-1]] == ["t2", "t1", "t0"]
    with pytest.raises(ConfigError, match="is not a key function"):
        Handlers().query(queries_pb2.AllTargets, order=[_UnhashableKey()])


def test_a_checkpoint_installed_into_the_store_is_sorted_at_the_next_read() -> None:
    source = kept_store()
    Feed(source).set(*[scored(f"t{i:03d}", float(i % 5)) for i in range(30)])
    encoded, positions, _ = source.of(Target).stored_state()
    store = Store(registry(), orders={TARGET: [by_score]}, keep_events=False)
    store.of(Target).install_state(encoded, positions, None)
    got: list[list[Target]] = []
    store.of(Target).watch(order_by=by_score).subscribe(got.append)
    want = sorted(source.of(Target).all(), key=by_score_then_id)
    assert list(got[-1]) == want
