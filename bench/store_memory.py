"""In-process memory of a Store per stored Target (no broker, no gRPC).

    python -m bench.store_memory --targets 100000

Fills a `Store` with N Targets shaped like the scale section's (as query_svc's
mirror: `keep_events=False` with the app's declared indexes and orders, each
kept order read once so that it is built; as command_svc's: the same without
orders; as repo_svc: `keep_events=True`) and reports, per stored Target, the growth of this
process's RSS and the bytes tracemalloc sees still allocated (with the
largest allocation sites when `--top` is given). Each mode runs in its own
child process, so one's freed memory does not hide the next one's growth.
For repo_svc's store it also times (CPU) what serving a new RepoService
subscriber's snapshot costs: `Store.snapshot()` and serialising it in
RepoChange messages of 500 events, as the Subscribe stream sends it.
`--evaluate` then runs a full AllTargets evaluation (handler and encoder) on
the mirror twice and reports the RSS it leaves, before and after glibc's
`malloc_trim(0)`. `STORE_MEMORY_CHUNK` sets the events per applied batch (1000).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from typing import Any

from targets.v1 import entities_pb2, queries_pb2

from bench.scale_targets import TOPIC, scale_target, stored_event
from myko.app import load_app
from myko.query_result_encoder import QueryResultEncoder
from myko.repo import Store
from myko.v1 import item_pb2, repo_pb2
from myko.watermark import Watermark

CHUNK = int(os.environ.get("STORE_MEMORY_CHUNK", "1000"))


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _events(start: int, stop: int) -> list[item_pb2.Event]:
    """SET events as command_svc writes them: a full MItem, tx, ts, source, principal."""
    return [
        stored_event(scale_target(i, tenant="default"), partition=i % 3, offset=i) for i in range(start, stop)
    ]


def measure(n: int, keep_events: bool, top: int, evaluate: bool, orders: bool = False) -> dict[str, object]:
    app = load_app("targets")
    gc.collect()
    rss0 = _rss()
    if top:  # tracemalloc's own bookkeeping would inflate the RSS figure: RSS runs without it
        tracemalloc.start(1)
    declared = getattr(app, "declared_orders", {}) if orders else {}
    store = Store(app.entities, indexes=app.declared_indexes, orders=declared, keep_events=keep_events)
    for start in range(0, n, CHUNK):
        store.apply_events(_events(start, min(n, start + CHUNK)), Watermark())
    for key in declared.get("targets.v1.Target", []):  # read once: each kept order built
        store.of(entities_pb2.Target).kept_order(key)
    gc.collect()
    rss1 = _rss()
    traced, _peak = tracemalloc.get_traced_memory()
    snap = tracemalloc.take_snapshot() if top else None
    tracemalloc.stop()
    assert len(store.of(entities_pb2.Target)) == n
    after_get = after_trim = None
    if evaluate and not keep_events:
        # What a full AllTargets evaluation (a Get, a new subscriber) leaves in RSS.
        handler: Any = app.queries.get("targets.v1.AllTargets").handler  # type: ignore[union-attr]
        for _ in range(2):
            out: list[Any] = []
            handler(queries_pb2.AllTargets(), store, "").subscribe(out.append).dispose()
            QueryResultEncoder("q").encode(out[-1], store.watermark.to_proto(), 1)
            del out
            gc.collect()
        after_get = (_rss() - rss0) / n
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
            after_trim = (_rss() - rss0) / n
    snapshot_ms = None
    if keep_events:
        t0 = time.process_time()
        sent = 0
        if hasattr(store.of(entities_pb2.Target), "write_events"):  # from the stored bytes
            from myko.repo_service import snapshot_chunks

            chunks = snapshot_chunks(store, [TOPIC], store.watermark.to_proto())
            sent = sum(map(len, chunks))
            count = -1  # counted below, outside the timing
        else:  # the stored Events, serialised by gRPC
            events = store.snapshot()
            for i in range(0, len(events), 500):
                sent += len(
                    repo_pb2.RepoChange(snapshot=True, events=events[i : i + 500]).SerializeToString()
                )
            count = len(events)
        snapshot_ms = 1000 * (time.process_time() - t0)
        if count == -1:
            count = sum(len(repo_pb2.RepoChange.FromString(c).events) for c in chunks)
        assert count == n and sent > 0
    sites = []
    if snap is not None:
        for stat in snap.statistics("lineno")[:top]:
            frame = stat.traceback[0]
            sites.append(f"{stat.size / n:7.0f} B/Target  {frame.filename}:{frame.lineno}")
    return {
        "rss_per": (rss1 - rss0) / n,
        "traced_per": traced / n if top else None,
        "sites": sites,
        "snapshot_ms": snapshot_ms,
        "after_get": after_get,
        "after_trim": after_trim,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=100_000)
    ap.add_argument("--top", type=int, default=0, help="largest allocation sites to list")
    ap.add_argument(
        "--evaluate",
        action="store_true",
        help="then run AllTargets twice (handler + encoder) and report RSS after it, and after malloc_trim",
    )
    ap.add_argument("--child", choices=["query", "mirror", "repo"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(a.targets, a.child == "repo", a.top, a.evaluate, orders=a.child == "query")))
        return
    for mode, label in (
        ("query", "query_svc store (keep_events=False, declared indexes and orders, each read once)"),
        ("mirror", "command_svc store (keep_events=False, declared indexes)"),
        ("repo", "repo_svc store (keep_events=True)"),
    ):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.store_memory",
                "--targets",
                str(a.targets),
                "--top",
                str(a.top),
                "--child",
                mode,
                *(["--evaluate"] if a.evaluate else []),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out)
        if r["traced_per"] is None:
            print(f"{label}, {a.targets} Targets: RSS {r['rss_per']:.0f} B/Target")
        else:
            print(f"{label}, {a.targets} Targets: tracemalloc {r['traced_per']:.0f} B/Target still allocated")
        if r["after_get"] is not None:
            print(f"    after two full AllTargets evaluations: RSS {r['after_get']:.0f} B/Target")
        if r["after_trim"] is not None:
            print(f"    then after malloc_trim(0): RSS {r['after_trim']:.0f} B/Target")
        if r["snapshot_ms"] is not None:
            print(
                f"    snapshot for a new RepoService subscriber (build + serialise): {r['snapshot_ms']:.0f} ms CPU"
            )
        for site in r["sites"]:
            print("    " + site)


if __name__ == "__main__":
    main()
