"""Fan-out at scale: N subscribers over M distinct queries, one stream each vs multiplexed.

A change (one ImportTargets rewriting the M watched Targets) alters every
subscriber's result. Per change we take send -> the LAST subscriber holding
the changed result (from sending the command, so its commit is included) and
query_svc's CPU per change. Four levels in the same run, each with its own
subscribers:

- baseline: M subscribers, one Watch stream each (one per distinct query);
- separate: N subscribers, one Watch stream each (today's way);
- multiplexed: N subscribers over LiveBus/Open streams of at most `per_stream`
  subscriptions (the services' default limit), subscriptions to the same query
  side by side as Client.live() places them, one frame per subscription;
- grouped: the same streams opened with group_results (one frame per stream,
  query and change).

"CPU per extra subscriber" is (query_svc CPU per change at a level - at the
baseline) / (N - M): what each subscriber beyond one per distinct query costs.
The separate streams share a connection per `per_channel` streams (a thousand
connections would measure the bench's sockets more than query_svc).

    python -m bench.fanout_mux                         # N=1000, M=100 (about a minute)
    python -m bench.fanout_mux --subscribers 10000 --queries 100 --levels grouped,multiplexed
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from bench.client import CHANNEL_OPTIONS, CommandClient, pack
from bench.cpu import CpuMeter, CpuUse
from bench.samples import Samples
from myko.v1 import item_pb2, live_pb2, query_pb2

LEVELS = ("baseline", "separate", "multiplexed", "grouped")
_WATCH = "/myko.v1.QueryBus/Watch"
_OPEN = "/myko.v1.LiveBus/Open"


@dataclass
class MuxLevel:
    name: str
    subscribers: int
    streams: int
    changes: int
    last: Samples = field(default_factory=Samples)  # send -> every subscriber has it
    cpu: CpuUse | None = None

    @property
    def query_cpu_per_change_s(self) -> float:
        if self.cpu is None or not self.changes:
            return math.nan
        return self.cpu.seconds.get("query", math.nan) / self.changes


@dataclass
class MuxFanoutResult:
    subscribers: int
    queries: int
    per_stream: int
    levels: list[MuxLevel] = field(default_factory=list)

    def level(self, name: str) -> MuxLevel | None:
        return next((lv for lv in self.levels if lv.name == name), None)

    def per_extra_subscriber_s(self, lv: MuxLevel) -> float:
        base = self.level("baseline")
        if base is None or lv.subscribers <= base.subscribers:
            return math.nan
        return (lv.query_cpu_per_change_s - base.query_cpu_per_change_s) / (lv.subscribers - base.subscribers)


class _Coverage:
    """Which subscribers hold the current change's result, and when the last one got it.

    A change is recognised by the Target's score it sets (each change a new one): a
    watermark cannot tell, since one Target's emission need not cover the other
    partitions the same command wrote to."""

    def __init__(self, subscribers: int) -> None:
        self.latest: list[float] = [math.nan] * subscribers
        self._expected = math.nan
        self._left = 0
        self.last_s = 0.0
        self.all_in = asyncio.Event()

    def expect(self, score: float) -> None:
        self._expected = score
        self._left = sum(1 for v in self.latest if v != score)
        self.all_in.clear()
        if not self._left:
            self.all_in.set()

    def got(self, index: int, score: float, now: float) -> None:
        if self.latest[index] == score or math.isnan(score):
            return
        self.latest[index] = score
        if score == self._expected:
            self._left -= 1
            self.last_s = now
            if not self._left:
                self.all_in.set()

    def settled(self) -> bool:
        return not any(math.isnan(v) for v in self.latest)


def _score(result: query_pb2.QueryResult) -> float:
    """The watched Target's score; NaN while the query_svc mirror has not got it yet."""
    target = entities_pb2.Target()
    if not result.items:
        return math.nan
    if not result.items[0].Unpack(target):
        raise RuntimeError(f"expected a Target, got {result.items[0].type_url}")
    return target.score


async def _read_watch(call: grpc.aio.UnaryStreamCall[bytes, bytes], index: int, cov: _Coverage) -> None:
    async for raw in call:
        now = time.perf_counter()
        cov.got(index, _score(query_pb2.QueryResult.FromString(raw)), now)


async def _read_live(
    call: grpc.aio.UnaryStreamCall[bytes, bytes], index_of: dict[str, int], cov: _Coverage
) -> None:
    async for raw in call:
        now = time.perf_counter()
        frame = live_pb2.LiveFrame.FromString(raw)
        body = frame.WhichOneof("body")
        if body == "error":
            raise RuntimeError(f"subscription {frame.sub_id} failed: {frame.error.message}")
        if body != "query":
            continue
        score = _score(frame.query)
        for sub_id in (frame.sub_id, *frame.more_sub_ids):
            cov.got(index_of[sub_id], score, now)


def _request(target_id: str, at_least: item_pb2.Watermark) -> query_pb2.QueryRequest:
    return query_pb2.QueryRequest(query=pack(queries_pb2.TargetById(id=target_id)), at_least=at_least)


async def _measure_level(
    name: str,
    *,
    commands: CommandClient,
    query_addr: str,
    meter: CpuMeter,
    ids: list[str],
    created: item_pb2.Watermark,
    subscribers: int,
    per_stream: int,
    per_channel: int,
    changes: int,
    warmup: int,
    timeout_s: float,
    say: Callable[[str], None],
) -> MuxLevel:
    # Subscriber i watches query i % M (interleaved: nothing is sorted for us).
    query_of = [i % len(ids) for i in range(subscribers)]
    cov = _Coverage(subscribers)
    calls: list[grpc.aio.UnaryStreamCall[bytes, bytes]] = []
    readers: list[asyncio.Task[None]] = []
    channels: list[grpc.aio.Channel] = []

    def channel() -> grpc.aio.Channel:
        ch = grpc.aio.insecure_channel(query_addr, options=CHANNEL_OPTIONS)
        channels.append(ch)
        return ch

    if name in ("baseline", "separate"):
        for i in range(subscribers):
            if i % per_channel == 0:
                watch = channel().unary_stream(_WATCH, query_pb2.QueryRequest.SerializeToString, None)
            call = watch(_request(ids[query_of[i]], created))
            calls.append(call)
            readers.append(asyncio.create_task(_read_watch(call, i, cov)))
    else:
        open_ = channel().unary_stream(_OPEN, live_pb2.LiveOpen.SerializeToString, None)
        # As Client.live() places them: subscriptions to one request side by side.
        order = sorted(range(subscribers), key=lambda i: query_of[i])
        for start in range(0, subscribers, per_stream):
            chunk = order[start : start + per_stream]
            req = live_pb2.LiveOpen(
                subscriptions=[
                    live_pb2.LiveSubscription(sub_id=f"s{i}", query=_request(ids[query_of[i]], created))
                    for i in chunk
                ],
                group_results=name == "grouped",
            )
            call = open_(req)
            calls.append(call)
            readers.append(asyncio.create_task(_read_live(call, {f"s{i}": i for i in chunk}, cov)))
    level = MuxLevel(name, subscribers, len(calls), changes)
    say(f"Fan-out at scale, {name}: {subscribers} subscribers over {len(calls)} streams ...")
    try:
        async with asyncio.timeout(timeout_s + subscribers / 200):
            while not cov.settled():
                failed = [t for t in readers if t.done()]
                if failed:
                    failed[0].result()
                    raise RuntimeError("a stream ended early")
                await asyncio.sleep(0.05)
        for n in range(warmup + changes):
            if n == warmup:
                meter.start()
            # One command that alters all M results (each Target's score).
            t_send = time.perf_counter()
            cov.expect(float(n + 1))
            await commands.execute(
                commands_pb2.ImportTargets(
                    targets=[commands_pb2.SetTarget(id=t, name=t, score=float(n + 1)) for t in ids]
                )
            )
            async with asyncio.timeout(timeout_s):
                await cov.all_in.wait()
            if n >= warmup:
                level.last.add(cov.last_s - t_send)
        level.cpu = meter.stop()
    finally:
        for call in calls:
            call.cancel()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for ch in channels:
            await ch.close(None)
    return level


async def measure_fanout_mux(
    *,
    command_channel: grpc.aio.Channel,
    query_addr: str,
    meter: CpuMeter,
    subscribers: int,
    queries: int,
    changes: int,
    warmup: int,
    run_id: str,
    levels: Sequence[str] = LEVELS,
    per_stream: int = 256,
    per_channel: int = 100,
    timeout_s: float = 30.0,
    say: Callable[[str], None] = lambda _: None,
) -> MuxFanoutResult:
    commands = CommandClient(command_channel)
    ids = [f"mux-{run_id}-{i}" for i in range(queries)]
    # Each subscription fenced on it (at_least), so its first result already has its Target.
    created = await commands.execute(
        commands_pb2.ImportTargets(targets=[commands_pb2.SetTarget(id=t, name=t) for t in ids])
    )
    out = MuxFanoutResult(subscribers, queries, per_stream)
    for name in levels:
        n = queries if name == "baseline" else subscribers
        out.levels.append(
            await _measure_level(
                name,
                commands=commands,
                query_addr=query_addr,
                meter=meter,
                ids=ids,
                created=created.visible_at,
                subscribers=n,
                per_stream=per_stream,
                per_channel=per_channel,
                changes=changes,
                warmup=warmup,
                timeout_s=timeout_s,
                say=say,
            )
        )
    return out


HEAD = [
    "Level",
    "Subscribers",
    "Streams",
    "Changes",
    "send -> last p50 ms",
    "send -> last p99 ms",
    "query_svc CPU ms/change",
    "µs/change per extra subscriber",
]


def rows(r: MuxFanoutResult) -> list[list[str]]:
    def ms(s: float) -> str:
        return "-" if math.isnan(s) else f"{s * 1000:.1f}"

    def us(s: float) -> str:
        return "-" if math.isnan(s) else f"{s * 1e6:.1f}"

    return [
        [
            lv.name,
            str(lv.subscribers),
            str(lv.streams),
            str(lv.changes),
            ms(lv.last.p50),
            ms(lv.last.p99),
            ms(lv.query_cpu_per_change_s),
            us(r.per_extra_subscriber_s(lv)),
        ]
        for lv in r.levels
    ]


def issue11_rows(r: MuxFanoutResult) -> list[list[str]]:
    """Target 6 beside the issue's "Now", for bench/report.py's issue 11 table."""
    out = []
    for name, what in (("separate", "one Watch stream each"), ("grouped", "LiveBus, grouped")):
        lv = r.level(name)
        if lv is None:
            continue
        extra = r.per_extra_subscriber_s(lv)
        out.append(
            [
                f"fan-out {lv.subscribers} over {r.queries} queries ({what}): CPU per change per extra subscriber",
                "~28 us",
                "-" if math.isnan(extra) else f"{extra * 1e6:.1f} us",
                "<= 10 us",
            ]
        )
        out.append(
            [
                f"  last subscriber p99 after the change ({what})",
                "-",
                "-" if not lv.last else f"{lv.last.p99 * 1000:.0f} ms",
                "<= 100 ms",
            ]
        )
    return out


def title(r: MuxFanoutResult) -> str:
    return (
        f"Fan-out at scale: {r.subscribers} subscribers over {r.queries} distinct queries, one change"
        f" alters all (LiveBus streams of at most {r.per_stream})"
    )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.fanout_mux", description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--changes", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--per-stream", type=int, default=256, help="subscriptions per LiveBus stream")
    ap.add_argument("--levels", default=",".join(LEVELS), help=f"some of {','.join(LEVELS)}")
    a = ap.parse_args(argv)
    unknown = set(a.levels.split(",")) - set(LEVELS)
    if unknown:
        ap.error(f"unknown levels {sorted(unknown)}")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    """This phase alone, on a local Kafka and a fresh stack (the full bench runs it too)."""
    import os
    import sys
    import uuid
    from pathlib import Path

    from bench.cpu import pids_with_argument
    from bench.services import myko_stack
    from myko.local.kafka import LocalKafka

    a = _parse(argv)

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    kafka = LocalKafka()
    say("Starting a local Kafka ...")
    kafka.start()
    try:
        prefix = f"benchmux{uuid.uuid4().hex[:8]}."
        log_dir = Path(__file__).resolve().parent.parent / ".run" / "bench" / prefix.rstrip(".")
        stack, ports = myko_stack(
            bootstrap_servers=kafka.bootstrap_servers, topic_prefix=prefix, log_dir=log_dir, partitions=3
        )
        with stack:
            pids = {svc.name: svc.pid for svc in stack.services if svc.pid is not None}
            broker = pids_with_argument(str(kafka.data_dir))
            meter = CpuMeter({**pids, "bench": os.getpid(), **({"kafka": broker[0]} if broker else {})})

            async def run() -> MuxFanoutResult:
                channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports.command}", options=CHANNEL_OPTIONS)
                try:
                    return await measure_fanout_mux(
                        command_channel=channel,
                        query_addr=f"127.0.0.1:{ports.query}",
                        meter=meter,
                        subscribers=a.subscribers,
                        queries=a.queries,
                        changes=a.changes,
                        warmup=a.warmup,
                        run_id="0",
                        levels=a.levels.split(","),
                        per_stream=a.per_stream,
                        say=say,
                    )
                finally:
                    await channel.close(None)

            result = asyncio.run(run())
    finally:
        kafka.stop()
    print(title(result))
    widths = [max(len(h), *(len(row[i]) for row in rows(result))) for i, h in enumerate(HEAD)]
    for row in (HEAD, *rows(result)):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
