"""In-process CPU cost of a query result over N stored Targets (no broker, no gRPC).

    python -m bench.snapshot_cost --targets 10000,100000

Times, in CPU milliseconds of this process (steadier than wall time on a shared
machine), the parts of serving `AllTargets` that query_svc runs, over a store
built as query_svc builds it (the app's declared indexes and orders, filled in
one batch as a snapshot is; that and the first read of its kept orders are
timed too): starting the evaluation (the handler's watch), encoding the result cold
(a new evaluation), encoding it again after one change (a live evaluation),
and the per-entity `Any.Pack` encoding live_bus used before
myko/query_result_encoder.py, for comparison; then an empty `TargetsInZone`
evaluation with a declared index and with one built on first use.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import Message
from targets.v1 import entities_pb2, queries_pb2

from bench.scale_targets import TOPIC, scale_target, stored_event
from myko.app import load_app
from myko.events import SET
from myko.query_result_encoder import QueryResultEncoder
from myko.query_window import WindowResult, WindowSpec
from myko.repo import Store
from myko.v1 import item_pb2, query_pb2
from myko.watermark import Watermark


def _events(n: int) -> list[item_pb2.Event]:
    return [stored_event(scale_target(i), partition=0, offset=i) for i in range(n)]


def _cpu_ms(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    fn()
    return 1000 * (time.process_time() - t0)


def _packed_each(entities: Sequence[Message], watermark: item_pb2.Watermark) -> bytes:
    items = []
    for e in entities:
        packed = any_pb2.Any()
        packed.Pack(e, deterministic=True)
        items.append(packed)
    return query_pb2.QueryResult(query_type="q", items=items, watermark=watermark, seq=1).SerializeToString()


def _empty_zone(handler: Callable[..., Any], store: Store) -> None:
    seen: list[object] = []
    # The example's queries are scoped by tenant: the bench's Targets have none ("").
    handler(queries_pb2.TargetsInZone(zone_id="nowhere"), store, "").subscribe(seen.append).dispose()
    assert seen == [[]]


def _store(app: Any, declared: bool) -> Store:
    """A Store as query_svc builds it (declared indexes and, where this tree has them, orders)."""
    kwargs: dict[str, Any] = {"keep_events": False}
    if declared:
        kwargs["indexes"] = app.declared_indexes
        if hasattr(app, "declared_orders"):
            kwargs["orders"] = app.declared_orders
    return Store(app.entities, **kwargs)


def _catch_up_lines(app: Any, events: list[item_pb2.Event], n: int) -> tuple[Store, list[str]]:
    """The declared store filled in one batch (query_svc's snapshot), timed, and its kept
    orders merged (they are sorted on first read), timed."""
    store = _store(app, True)
    applied = _cpu_ms(lambda: store.apply_events(events, Watermark({(TOPIC, 0): n})))
    repo = store.of(entities_pb2.Target)
    keys = list(getattr(app, "declared_orders", {}).get("targets.v1.Target", []))
    merged = _cpu_ms(lambda: [repo.kept_order(k) for k in keys])
    return store, [
        f"  apply {n} SETs in one batch (declared indexes, {len(keys)} declared orders): {applied:.0f} ms;"
        f" first read of the kept orders (one sort each): {merged:.0f} ms"
    ]


def measure(n: int) -> list[str]:
    app = load_app("targets")
    events = _events(n)
    declared_store, lines = _catch_up_lines(app, events, n)
    for declared in (True, False):
        store = declared_store if declared else _store(app, False)
        if not declared:
            store.apply_events(events, Watermark({(TOPIC, 0): n}))
        in_zone = app.queries.get("targets.v1.TargetsInZone")
        assert in_zone is not None
        first = _cpu_ms(lambda: _empty_zone(in_zone.handler, store))  # noqa: B023
        again = _cpu_ms(lambda: _empty_zone(in_zone.handler, store))  # noqa: B023
        how = "declared index" if declared else "index built on first use"
        lines.append(f"  empty TargetsInZone ({how}): first {first:.2f} ms, next {again:.2f} ms")
    # The rest as query_svc runs it: over the store with the app's declarations.
    store = declared_store
    all_targets = app.queries.get("targets.v1.AllTargets")
    assert all_targets is not None
    results: list[Sequence[Message]] = []
    # Scoped handlers (by tenant) take the scope key; the registry types them as unscoped.
    scoped: Any = all_targets.handler
    live: list[Any] = []
    watching = _cpu_ms(
        lambda: live.append(scoped(queries_pb2.AllTargets(), store, "").subscribe(results.append))
    )
    watermark = store.watermark.to_proto()
    encoder = QueryResultEncoder("q")
    cold = _cpu_ms(lambda: encoder.encode(results[-1], watermark, 1))
    # A second new evaluation, with its encoding, is what a later new subscriber costs
    # (where the tenant index is not declared, the first one built it).
    later: list[Sequence[Message]] = []
    second = _cpu_ms(
        lambda: [
            scoped(queries_pb2.AllTargets(), store, "").subscribe(later.append).dispose(),
            QueryResultEncoder("q").encode(later[-1], watermark, 1),
        ]
    )

    def change(k: int) -> None:
        # The k-th of the live array, decoded alone (reading the array would decode all of it).
        array: Any = results[-1]
        encodings = getattr(array, "encodings", None)
        data = encodings[k] if encodings is not None else array[k].SerializeToString()
        changed = entities_pb2.Target.FromString(data)
        changed.hit_count += 1
        changed.item.version += 1
        packed = any_pb2.Any()
        packed.Pack(changed)
        event = item_pb2.Event(
            op=SET,
            type=TOPIC,
            id=changed.item.id,
            entity=packed,
            offset=item_pb2.Offset(topic=TOPIC, offset=n + k),
        )
        store.apply_events([event], Watermark({(TOPIC, 0): n + k + 1}))

    # The first change also fills the watch's sort-key cache; the second is the steady cost.
    first_change = _cpu_ms(lambda: change(0))
    apply_ms = _cpu_ms(lambda: change(1))
    warm = _cpu_ms(lambda: encoder.encode(results[-1], watermark, 2))
    decoded = list(results[-1])  # (a deferred array decodes here, outside the timing)
    before = _cpu_ms(lambda: _packed_each(decoded, watermark))
    live[0].dispose()  # the window's changes below are timed without AllTargets' re-sort
    lines += _window_lines(app.queries.get("targets.v1.TargetsPage"), store, change)
    lines[:0] = [
        f"{n} Targets:",
        f"  AllTargets new evaluation: {watching:.0f} ms",
        f"  encode cold {cold:.0f} ms; Any.Pack per entity (before) {before:.0f} ms",
        f"  a second new evaluation + its encoding: {second:.0f} ms",
        f"  a change to the live result: watch update (re-sort) {apply_ms:.0f} ms (the first change,"
        f" which fills the sort-key cache: {first_change:.0f} ms), encode {warm:.0f} ms",
    ]
    return lines


def _window_lines(reg: Any, store: Store, change: Callable[[int], None]) -> list[str]:
    """TargetsPage (a windowed query, docs/windows.md) as query_svc runs it: the first page of a
    new order, the next page of the same order, and a change inside and after the first page."""
    assert reg is not None and reg.window is not None
    watch = reg.handler(queries_pb2.TargetsPage(), store, "")
    order = watch.ordered(on_idle=lambda _: None)
    page1: list[WindowResult[Message]] = []
    page2: list[WindowResult[Message]] = []
    first = _cpu_ms(lambda: order.window(WindowSpec(0, 100)).subscribe(page1.append))
    second = _cpu_ms(lambda: order.window(WindowSpec(100, 100)).subscribe(page2.append))
    inside = _cpu_ms(lambda: change(2))  # results[-1][2]: an AllTargets row by name, on page 1
    emitted = len(page1)
    after = _cpu_ms(lambda: change(len(store.of(entities_pb2.Target)) - 1))  # the last by name
    quiet = len(page1) == emitted and len(page2) == 1
    order.close()
    return [
        f"  TargetsPage (window of 100): first page, new order {first:.0f} ms; next page {second:.2f} ms",
        f"  a change inside page 1 {inside:.2f} ms; after both pages {after:.2f} ms"
        f" ({'no emission' if quiet else 'EMITTED'})",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.snapshot_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="10000,100000", help="comma-separated store sizes")
    a = ap.parse_args(argv)
    for n in (int(v) for v in a.targets.split(",")):
        print("\n".join(measure(n)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
