"""A new subscriber's AllTargets over gRPC, without the broker, beside the raw gRPC floor.

    MYKO_APP=targets python -m bench.snapshot_wire --targets 100000 --rounds 10

query_svc's own parts (its LiveService: store with the app's declared indexes
and orders, LiveBus, GrpcServer with its options, heap trimmer) run in a child
process over N Targets loaded as its start-up snapshot loads them; the feed
from repo_svc is left out. A bare grpc.aio client with the bench's channel
options times fresh `Watch(AllTargets)` calls (each a new evaluation) until the
first emission's bytes are in hand, as bench/scale.py does. The child stamps
when its handler starts and when the payload is ready (evaluation and
encoding done), on the same monotonic clock, which splits each call into
dispatch, evaluation + encoding, and the transfer of the bytes. Interleaved
with those calls, a bare gRPC server (bench/transfer_floor.py) sends a
message of the same size: the raw floor of the same moment. The client's
decode of the result (not part of the timed figure) is timed in process.

`--gets N` also times N one-shot `Get(TargetsInZone)` calls of a zone no
Target is in (bench/scale.py's empty filtered Get) per round, after 5 untimed
ones: the round trip, the child's own time in `LiveBus.get` (wall and CPU),
and a bare unary call answering as many bytes (the floor of the same moment).
The child builds tracing as query_svc does by default (a server span per
unary call, 1 in 10 kept, exported nowhere), so a Get pays what it pays there.

`--tree DIR` runs the child on another checkout's `myko` (an A/B in one run:
`--tree DIR` and this tree alternate round by round).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.samples import Samples

_WATCH = "/myko.v1.QueryBus/Watch"
_ROOT = Path(__file__).resolve().parent.parent


def _events(n: int) -> list[Any]:
    # The scale section's Targets (bench/scale.py's ImportTargets), as stored events.
    from bench.scale_targets import scale_target, stored_event

    return [stored_event(scale_target(i), partition=0, offset=i) for i in range(n)]


async def _serve(n: int) -> None:
    """The child: query_svc without its feed, over `n` Targets. Prints its port, then, when
    stdin closes, the (handler start, payload ready) stamps of each Watch as JSON."""
    from myko.app import load_app
    from myko.live_kind import LiveKind
    from myko.live_service import LiveService
    from myko.settings import QuerySettings
    from myko.trace_export import build_tracing
    from myko.watermark import Watermark

    # query_svc's defaults; MYKO_* in the environment (MYKO_HEAP_TRIM_THRESHOLD_BYTES=0, ...) apply.
    defaults = {"MYKO_QUERY_PORT": "0", "MYKO_LOG_LEVEL": "WARNING", "MYKO_AUTH_DISABLED": "true"}
    env = {
        **defaults,
        **{k: v for k, v in os.environ.items() if k.startswith("MYKO_")},
        "MYKO_APP": "targets",
    }
    settings = QuerySettings.from_env(env)
    tracing = build_tracing(settings.tracing, service="query_svc", instance_id=settings.instance_id)
    service = LiveService(settings, load_app("targets"), kind=LiveKind.QUERY, tracing=tracing)
    print(f"query_svc child: myko from {Path(sys.modules['myko'].__file__ or '').parent}", file=sys.stderr)
    events = _events(n)
    topic = events[0].type
    # One batch, as query_svc's start-up snapshot arrives (repo_feed.py).
    service.store.apply_events(events, Watermark({(topic, 0): n}))
    del events
    stamps: list[tuple[float, float, float]] = []
    bus_watch = service.bus.watch

    zones = 0

    def move_elsewhere() -> None:
        """A change the AllTargets result does not see: the store (its watermark) moves on."""
        nonlocal zones
        from google.protobuf import any_pb2
        from targets.v1 import entities_pb2

        from myko.events import SET
        from myko.v1 import item_pb2

        zone = entities_pb2.Zone(name=f"zone {zones}")
        zone.item.id = f"zone-{zones}"
        packed = any_pb2.Any()
        packed.Pack(zone, deterministic=True)
        ztopic = entities_pb2.Zone.DESCRIPTOR.full_name
        at = item_pb2.Offset(topic=ztopic, partition=0, offset=zones)
        event = item_pb2.Event(op=SET, type=ztopic, id=zone.item.id, entity=packed, offset=at)
        zones += 1
        service.store.apply_events([event], Watermark({(ztopic, 0): zones}))

    async def stamped(packed: Any, fence: Any, context: Any) -> AsyncIterator[bytes]:
        if ("x-bench-move", "1") in (context.invocation_metadata() or ()):
            move_elsewhere()
        started, cpu = time.perf_counter(), time.thread_time()
        first = True
        async for payload in bus_watch(packed, fence, context):
            if first:
                stamps.append((started, time.perf_counter(), time.thread_time() - cpu))
                first = False
            yield payload

    service.bus.watch = stamped  # type: ignore[method-assign]
    got: list[tuple[float, float]] = []  # each Get: (wall, CPU) seconds in LiveBus.get
    bus_get = service.bus.get

    async def timed_get(packed: Any, fence: Any, context: Any) -> bytes:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return await bus_get(packed, fence, context)
        finally:
            got.append((time.perf_counter() - started, time.thread_time() - cpu))

    service.bus.get = timed_get  # type: ignore[method-assign]
    await service.heap.start()
    await service.grpc.start()
    print(service.grpc.port, flush=True)
    await asyncio.to_thread(sys.stdin.read)
    print(json.dumps({"watch": stamps, "get": got}), flush=True)
    await service.grpc.stop()
    service.hub.close()
    await service.heap.stop()
    tracing.shutdown()


class MykoServer:
    """The child process on `tree`'s myko (None: this tree)."""

    def __init__(self, n: int, tree: Path | None) -> None:
        env = dict(os.environ)
        root = tree if tree is not None else _ROOT
        env["PYTHONPATH"] = os.pathsep.join([str(root), str(root / "examples" / "targets")])
        env["GRPC_VERBOSITY"] = "ERROR"
        # By path: the child imports only myko and the example, from `root`.
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", "--targets", str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(root),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self._proc.kill()
            raise RuntimeError(f"the query_svc child did not start (said {line!r})")
        self.address = f"127.0.0.1:{int(line)}"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def finish(self) -> tuple[list[tuple[float, float, float]], list[tuple[float, float]]]:
        """Each Watch's (handler start, payload ready, CPU) and each Get's (wall, CPU) in the child."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.close()
        stamps = json.loads(self._proc.stdout.readline())
        self._proc.wait(timeout=30.0)
        return [(a, b, c) for a, b, c in stamps["watch"]], [(a, b) for a, b in stamps["get"]]

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


@dataclass
class Side:
    """One tree's calls: wall time of each, and its parts from the child's stamps."""

    label: str
    total: Samples = field(default_factory=Samples)
    dispatch: Samples = field(default_factory=Samples)  # call start -> handler start
    evaluate: Samples = field(default_factory=Samples)  # handler start -> payload ready
    evaluate_cpu: Samples = field(default_factory=Samples)  # the same, CPU of the child's main thread
    transfer: Samples = field(default_factory=Samples)  # payload ready -> bytes in hand
    payload_bytes: int = 0
    faults: list[int] = field(default_factory=list)  # the child's minor page faults per call
    # Joining a live AllTargets right after a change elsewhere (the payload restamped).
    joining: Samples = field(default_factory=Samples)
    joining_build: Samples = field(default_factory=Samples)  # handler start -> payload ready
    # --gets: empty filtered Gets, round trip and the child's time in LiveBus.get.
    get_total: Samples = field(default_factory=Samples)
    get_handler: Samples = field(default_factory=Samples)
    get_handler_cpu: Samples = field(default_factory=Samples)
    get_bytes: int = 0

    @property
    def faults_p50(self) -> int:
        return sorted(self.faults)[len(self.faults) // 2] if self.faults else 0


def _minor_faults(pid: int) -> int:
    # /proc/PID/stat: the 10th field (after the parenthesised name) is minflt.
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


async def _calls(
    address: str, count: int, pid: int, joiners: int = 0
) -> tuple[list[tuple[float, float, int]], int]:
    """`count` new subscribers, then (with `joiners`) one kept open and `joiners` joining it,
    each after a change elsewhere moved the store: (start, bytes in hand, page faults) each."""
    from targets.v1 import queries_pb2

    from bench.client import CHANNEL_OPTIONS, pack
    from myko.v1 import query_pb2

    request = query_pb2.QueryRequest(query=pack(queries_pb2.AllTargets())).SerializeToString()
    out: list[tuple[float, float, int]] = []
    size = 0
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        watch = channel.unary_stream(_WATCH, request_serializer=None, response_deserializer=None)
        for _ in range(count):
            faults = _minor_faults(pid)
            t0 = time.perf_counter()
            call = watch(request, timeout=60.0)
            try:
                async for payload in call:
                    out.append((t0, time.perf_counter(), _minor_faults(pid) - faults))
                    size = len(payload)
                    break
            finally:
                call.cancel()
        if joiners:
            keeper = watch(request, timeout=600.0)
            try:
                async for _payload in keeper:
                    break
                for _ in range(joiners):
                    t0 = time.perf_counter()
                    call = watch(request, timeout=60.0, metadata=(("x-bench-move", "1"),))
                    try:
                        async for _payload in call:
                            out.append((t0, time.perf_counter(), 0))
                            break
                    finally:
                        call.cancel()
            finally:
                keeper.cancel()
    return out, size


async def _gets(address: str, count: int) -> tuple[Samples, int]:
    """`count` empty filtered Gets timed as bench/scale.py times them, and the answer's size."""
    from targets.v1 import queries_pb2

    from bench.client import CHANNEL_OPTIONS
    from bench.scale import answer_bytes, timed_gets

    empty = queries_pb2.TargetsInZone(zone_id="no-such-zone")
    out = Samples()
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        await timed_gets(channel, empty, out, count)
        size = await answer_bytes(channel, empty)
    return out, size


async def _side_round(side: Side, n: int, tree: Path | None, count: int, gets: int) -> None:
    from bench.scale import GET_WARMUP

    server = MykoServer(n, tree)
    try:
        # The first call sorts the kept orders the bulk load left unsorted (once per start-up).
        calls, size = await _calls(server.address, count + 1, server.pid, joiners=count)
        get_calls, side.get_bytes = await _gets(server.address, gets) if gets else (Samples(), 0)
    finally:
        stamps, get_stamps = server.finish()
    # The child timed the warm-ups and answer_bytes' Get too: the timed ones lie between.
    timed = get_stamps[GET_WARMUP : GET_WARMUP + len(get_calls.values)]
    for took, (wall, cpu) in zip(get_calls.values, timed, strict=True):
        side.get_total.add(took)
        side.get_handler.add(wall)
        side.get_handler_cpu.add(cpu)
    joined = list(zip(calls[count + 1 :], stamps[count + 2 :], strict=True))  # the keeper's stamp left out
    for (t0, t1, _faults), (started, ready, _cpu) in joined:
        side.joining.add(t1 - t0)
        side.joining_build.add(ready - started)
    for (t0, t1, faults), (started, ready, cpu) in list(zip(calls, stamps, strict=False))[1 : count + 1]:
        side.total.add(t1 - t0)
        side.faults.append(faults)
        side.evaluate_cpu.add(cpu)
        side.dispatch.add(started - t0)
        side.evaluate.add(ready - started)
        side.transfer.add(t1 - ready)
    side.payload_bytes = size


def _decode_ms(n: int) -> float:
    """CPU of QueryResult.FromString of the same result (what a client decoding it spends)."""
    from targets.v1 import entities_pb2

    from myko.query_result_encoder import QueryResultEncoder
    from myko.v1 import item_pb2, query_pb2

    entities = [entities_pb2.Target.FromString(e.entity.value) for e in _events(n)]
    payload = QueryResultEncoder("targets.v1.AllTargets").encode(entities, item_pb2.Watermark(), 1)
    t0 = time.process_time()
    query_pb2.QueryResult.FromString(payload)
    return 1000 * (time.process_time() - t0)


async def measure(
    n: int, rounds: int, count: int, tree: Path | None, gets: int = 0
) -> tuple[list[Side], Samples, Samples]:
    """Both sides' rounds, the raw floor of the snapshot's size, and (with `gets`) the unary floor."""
    from bench.scale import GET_WARMUP
    from bench.transfer_floor import FloorServer, time_floor, time_unary_floor

    sides = [Side("this tree")] + ([Side(f"--tree {tree}")] if tree is not None else [])
    floor = Samples()
    unary_floor = Samples()
    size = 0
    for r in range(rounds):
        # Alternate which tree goes first, so neither always follows the floor.
        order = sides if r % 2 == 0 else sides[::-1]
        for side in order:
            await _side_round(side, n, tree if side is not sides[0] else None, count, gets)
            size = side.payload_bytes
        with FloorServer(size) as floor_server:
            await time_floor(floor_server.address, count, floor)
        if gets:
            with FloorServer(sides[0].get_bytes) as floor_server:
                await time_unary_floor(floor_server.address, gets, unary_floor, warmup=GET_WARMUP)
    return sides, floor, unary_floor


def _fmt_us(s: Samples) -> str:
    return f"p50 {1e6 * s.p50:5.0f} us (min {1e6 * min(s.values):5.0f})"


def _fmt(s: Samples) -> str:
    return f"p50 {1000 * s.p50:6.1f} ms (min {1000 * min(s.values):6.1f})"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.snapshot_wire", description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=4, help="child starts per tree (each after a fresh load)")
    ap.add_argument("--count", type=int, default=5, help="timed new subscribers per round")
    ap.add_argument("--gets", type=int, default=0, help="timed empty filtered Gets per round (0: none)")
    ap.add_argument("--tree", type=Path, help="another checkout to compare with (its myko in the child)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        asyncio.run(_serve(a.targets))
        return 0
    load = os.getloadavg()
    sides, floor, unary_floor = asyncio.run(measure(a.targets, a.rounds, a.count, a.tree, a.gets))
    print(
        f"{a.targets} Targets, {sides[0].payload_bytes / 1e6:.1f} MB; load average at start {load[0]:.1f}, at end {os.getloadavg()[0]:.1f}"
    )
    for side in sides:
        print(f"  {side.label}: new subscriber {_fmt(side.total)}")
        print(
            f"    dispatch {_fmt(side.dispatch)}; evaluation + encoding {_fmt(side.evaluate)},"
            f" CPU {_fmt(side.evaluate_cpu)}; transfer {_fmt(side.transfer)};"
            f" the child's minor page faults per call p50 {side.faults_p50}"
        )
        print(
            f"    joining a live one after a change elsewhere: {_fmt(side.joining)};"
            f" handler start -> payload ready {_fmt(side.joining_build)}"
        )
    print(f"  raw gRPC floor, one {sides[0].payload_bytes / 1e6:.1f} MB message: {_fmt(floor)}")
    if a.gets:
        for side in sides:
            print(
                f"  {side.label}: empty filtered Get round trip {_fmt_us(side.get_total)};"
                f" in LiveBus.get {_fmt_us(side.get_handler)}, CPU {_fmt_us(side.get_handler_cpu)}"
            )
        print(f"  raw gRPC unary floor, {sides[0].get_bytes} bytes answered: {_fmt_us(unary_floor)}")
    with contextlib.suppress(ImportError):
        print(f"  client decode (QueryResult.FromString, CPU): {_decode_ms(a.targets):.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
