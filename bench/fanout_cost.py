"""In-process CPU of query_svc's part of a fan-out change (no broker, no gRPC).

    python -m bench.fanout_cost --queries 100 --changes 200

The store and the live bus as query_svc builds them (the example app), M
TargetById evaluations each with one sink, then per change one batch of M
events rewriting every watched Target, applied as the repo feed applies it:
the store's reduction, every evaluation's new array and its QueryResult bytes,
handed to the sinks. Timed in CPU ms of this process per change (steadier than
wall time on a shared machine; the median and the mean of `--changes`). What it
leaves out is what the stack adds: decoding the RepoChange and writing the
frames (bench/fanout_mux.py measures those, in the services).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence
from typing import cast

from google.protobuf import any_pb2, timestamp_pb2
from targets.v1 import entities_pb2, queries_pb2

from myko.app import load_app
from myko.authentication import Authenticator
from myko.events import set_event
from myko.live import LiveHub
from myko.live_bus import LiveBus
from myko.live_kind import LiveKind
from myko.repo import Store
from myko.rpc import Ctx
from myko.settings import AuthSettings
from myko.v1 import item_pb2
from myko.watermark import Watermark

_TS = timestamp_pb2.Timestamp(seconds=1_700_000_000)


class _Counted:
    """A sink that keeps the newest payload, as a subscriber's would."""

    def __init__(self) -> None:
        self.payloads = 0
        self.latest = b""

    def put(self, payload: bytes) -> None:
        self.payloads += 1
        self.latest = payload

    def fail(self, exc: BaseException) -> None:
        raise exc


class _NoDeadline:
    def time_remaining(self) -> float | None:
        return None


def _batch(ids: Sequence[str], score: float, offset: int) -> list[item_pb2.Event]:
    out = []
    for n, target_id in enumerate(ids):
        t = entities_pb2.Target(name=target_id, score=score)
        t.item.id, t.item.type, t.item.version = target_id, "targets.v1.Target", 1
        ev = set_event(t, tx="", ts=_TS, source="bench")
        ev.offset.CopyFrom(item_pb2.Offset(topic="targets.v1.Target", partition=n % 3, offset=offset + n))
        out.append(ev)
    return out


async def measure(queries: int, changes: int) -> list[float]:
    """CPU seconds of each change."""
    app = load_app("targets")
    store = Store(app.entities, indexes=app.declared_indexes, orders=app.declared_orders, keep_events=False)
    ids = [f"t{i}" for i in range(queries)]

    def watermark(offset: int) -> Watermark:
        # Every partition of every entity topic, as the repo feed's batches name them.
        return Watermark({(topic, p): offset for topic in store.topics for p in range(3)})

    store.apply_events(_batch(ids, 0.0, 0), watermark(queries))
    hub = LiveHub(position=lambda: store.watermark)
    auth = Authenticator(AuthSettings(disabled=True))
    bus = LiveBus(kind=LiveKind.QUERY, registry=app.queries, store=store, hub=hub, auth=auth)
    principal = await auth.from_metadata(())
    sinks = []
    for target_id in ids:
        packed = any_pb2.Any()
        packed.Pack(queries_pb2.TargetById(id=target_id), deterministic=True)
        sink = _Counted()
        await bus.open(packed, item_pb2.Watermark(), cast(Ctx, _NoDeadline()), principal, sink)
        sinks.append(sink)
    batches = [_batch(ids, float(k + 1), (k + 1) * queries) for k in range(changes)]
    spent = []
    for k, batch in enumerate(batches):
        t0 = time.process_time()
        store.apply_events(batch, watermark((k + 2) * queries))
        spent.append(time.process_time() - t0)
    if any(s.payloads != changes + 1 for s in sinks):
        raise RuntimeError("an evaluation did not emit once per change")
    return spent


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fanout_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--changes", type=int, default=200)
    a = ap.parse_args(argv)
    spent = asyncio.run(measure(a.queries, a.changes))
    print(
        f"{a.queries} evaluations, {a.changes} changes: CPU per change median"
        f" {statistics.median(spent) * 1000:.2f} ms, mean {statistics.mean(spent) * 1000:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
