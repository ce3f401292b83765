"""In-process CPU of a mirror's start: repo_svc's snapshot into query_svc's store (no broker).

    MYKO_APP=targets python -m bench.mirror_load --targets 100000,1000000 [--profile N] [--grpc]

What query_svc (and report_svc) do before they are SERVING, split into parts,
each timed in CPU seconds of this process (steadier than wall time on a shared
machine): (a) repo_svc writing a new subscriber's snapshot frames from its store
(`repo_service.snapshot_chunks`: events; `snapshot_column_chunks`: columns), (c) the
mirror parsing those frames as `RepoFeed` does (`RepoChange.FromString`, gathered
by `SnapshotGather`), and (d) the reset of query_svc's store (`keep_events=False`,
the app's declared indexes and orders) with them: event by event (the reset before
the bulk path), in bulk from the events, and in bulk from columns (what RepoFeed does now). repo_svc's store is built directly (its state
installed as a checkpoint is), with Targets as command_svc writes them.
`--grpc` also runs the whole path through RepoService/Subscribe and `RepoFeed`
over loopback gRPC in this process (b: the transfer is what that adds to a+c+d).
`--profile N` prints the N heaviest functions of (d) from cProfile.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any, TypeVar

from bench.scale_targets import TOPIC, scale_target, stored_event
from myko.app import load_app
from myko.collector_hold import CollectorHold
from myko.repo import Store
from myko.repo_feed import SnapshotGather
from myko.repo_service import snapshot_chunks, snapshot_column_chunks
from myko.v1 import repo_pb2
from myko.watermark import Watermark

T = TypeVar("T")


def repo_store(app: Any, n: int) -> Store:
    """repo_svc's store (keep_events=True) holding n Targets shaped as the scale section's."""
    encoded: dict[str, bytes] = {}
    positions: dict[str, tuple[str, int, int]] = {}
    envelopes: dict[str, bytes] = {}
    for i in range(n):
        t = scale_target(i, tenant="default", zone_id=f"zone-{i % 50}")
        encoded[t.item.id] = t.SerializeToString(deterministic=True)
        positions[t.item.id] = (TOPIC, i % 3, i // 3)
        # The envelope repo_svc keeps: the event without its entity and offset.
        envelope = stored_event(t, partition=i % 3, offset=i // 3)
        envelope.ClearField("entity")
        envelope.ClearField("offset")
        envelopes[t.item.id] = envelope.SerializeToString()
    store = Store(app.entities)
    store.repo(TOPIC).install_state(encoded, positions, envelopes)
    store._watermark = Watermark({(TOPIC, p): n // 3 + 1 for p in range(3)})
    return store


def mirror_store(app: Any) -> Store:
    return Store(app.entities, indexes=app.declared_indexes, orders=app.declared_orders, keep_events=False)


def cpu(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def decode(chunks: list[bytes]) -> SnapshotGather:
    """What RepoFeed does with the frames: parse each, gather the events or columns."""
    snapshot = SnapshotGather()
    hold = CollectorHold()
    for c in chunks:
        snapshot.add(repo_pb2.RepoChange.FromString(c))
        hold.hold()
    hold.release()
    return snapshot


def load(mirror: Store, snapshot: SnapshotGather, watermark: Watermark, how: str) -> None:
    if how == "events, event by event":  # the reset before the bulk path
        mirror._reset_by_events(snapshot.events, watermark)
    else:
        snapshot.load_into(mirror, watermark)


PATHS = (
    ("events, event by event", snapshot_chunks),
    ("events, bulk reset", snapshot_chunks),
    ("columns, bulk reset", snapshot_column_chunks),
)


def measure(n: int, profile: int, grpc_too: bool, paths: str = "all") -> None:
    app = load_app("targets")
    source, built = cpu(lambda: repo_store(app, n))
    print(f"{n} Targets (repo_svc store built in {built:.1f} CPU s)")
    watermark = source.watermark
    for how, write in PATHS:
        if paths != "all" and not how.startswith(paths):
            continue
        gc.collect()
        chunks, a = cpu(lambda: list(write(source, [TOPIC], watermark.to_proto())))  # noqa: B023
        size = sum(map(len, chunks))
        snapshot, c = cpu(partial(decode, chunks))
        del chunks
        mirror = mirror_store(app)
        hold = CollectorHold()
        hold.hold()
        prof = cProfile.Profile() if profile else None
        t0 = time.process_time()
        if prof is not None:
            prof.enable()
        load(mirror, snapshot, watermark, how)
        if prof is not None:
            prof.disable()
        d = time.process_time() - t0
        hold.release()
        assert len(mirror.repo(TOPIC)) == n
        print(
            f"  {how}: (a) repo_svc writes {size / 1e6:.0f} MB: {a:.2f} CPU s; (c) the mirror parses"
            f" them: {c:.2f}; (d) Store reset: {d:.2f} ({1e6 * d / n:.1f} us per entity);"
            f" a + c + d: {a + c + d:.2f} CPU s"
        )
        if prof is not None:
            pstats.Stats(prof).sort_stats("tottime").print_stats(profile)
        del snapshot, mirror
    if grpc_too:
        wall, used = asyncio.run(_over_grpc(app, source))
        print(
            f"  whole path over loopback gRPC (RepoService -> RepoFeed): {wall:.2f} s wall, {used:.2f} CPU s"
        )


async def _over_grpc(app: Any, source: Store) -> tuple[float, float]:
    import grpc

    from myko.repo_feed import RepoFeed
    from myko.repo_service import register_repo_service
    from myko.settings import TlsSettings
    from myko.tls import Transport

    server = grpc.aio.server(options=[("grpc.max_send_message_length", 256 * 1024 * 1024)])
    caught_up = asyncio.Event()
    caught_up.set()
    relay: Any = SimpleNamespace(report=None)  # ReportStatus is not called here
    register_repo_service(server, source, caught_up, Transport(TlsSettings()), relay)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    mirror = mirror_store(app)
    feed = RepoFeed(repo_addr=f"127.0.0.1:{port}", store=mirror)
    t0, c0 = time.perf_counter(), time.process_time()
    feed.start()
    try:
        await feed.wait_ready(timeout_s=600)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        await feed.stop()
        await server.stop(None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", default="100000", help="comma-separated sizes")
    ap.add_argument("--profile", type=int, default=0, help="print the N heaviest functions of Store.reset")
    ap.add_argument("--grpc", action="store_true", help="also the whole path over loopback gRPC")
    ap.add_argument(
        "--paths", choices=["all", "events", "columns"], default="all", help="which paths to time"
    )
    a = ap.parse_args()
    for n in (int(x) for x in a.targets.split(",")):
        measure(n, a.profile, a.grpc, a.paths)


if __name__ == "__main__":
    main()
