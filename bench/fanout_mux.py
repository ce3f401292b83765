"""Fan-out at scale: N subscribers over M distinct queries, one stream each vs multiplexed.

A change (one ImportTargets rewriting the M watched Targets) alters every
subscriber's result. Per change we take the import's send -> ack, ack -> the
LAST subscriber holding the changed result (the issue's measure, as in
bench/fanout.py), ack -> EACH subscriber (every subscriber of every change
pooled: its p99 is over N x changes arrivals), send -> last (the import's own
commit of M Targets included), and query_svc's CPU per change; then, in the
same streams, changes of one Target (its query's N/M subscribers) for what the
size of the command costs. Arrivals are taken when a frame is read, before it
is decoded; the bench keeps its books per frame, not per subscriber. Four
levels in the same run, each with its own subscribers:

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
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from bench.client import CHANNEL_OPTIONS, CommandClient, pack
from bench.cpu import CpuMeter, CpuUse, pids_with_argument
from bench.samples import Samples
from bench.services import MykoPorts
from myko.local.kafka import LocalKafka
from myko.local.procs import Stack
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
    ack_last: Samples = field(default_factory=Samples)  # ack -> every subscriber has it
    # ack -> each subscriber has it: every subscriber of every change, pooled
    ack_each: Samples = field(default_factory=Samples)
    send_ack: Samples = field(default_factory=Samples)  # the import's own round trip
    # Per measured change, perf_counter() seconds: (send, ack, first arrival, last arrival).
    times: list[tuple[float, float, float, float]] = field(default_factory=list)
    # A change of one Target (its query's subscribers only): send -> last, send -> ack.
    small_last: Samples = field(default_factory=Samples)
    small_send_ack: Samples = field(default_factory=Samples)
    cpu: CpuUse | None = None

    def add_change(self, t_send: float, t_ack: float, arrivals: Sequence[tuple[float, int]]) -> None:
        """One measured change: its send and ack, and (arrival, subscribers) of each frame."""
        first, last = arrivals[0][0], arrivals[-1][0]
        self.last.add(last - t_send)
        self.ack_last.add(last - t_ack)
        self.send_ack.add(t_ack - t_send)
        for t, n in arrivals:
            self.ack_each.extend([t - t_ack] * n)
        self.times.append((t_send, t_ack, first, last))

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
    """Which subscribers hold the current change's result, and when they got it.

    Kept per group of subscribers that one frame names (a Watch's one subscriber, an
    ungrouped subscription, or every subscription of a grouped stream to one request),
    not per subscriber: at ~2 us of Python per subscriber, 10,000 of them cost this
    process ~20 ms per change, on the same two cores as query_svc, and delayed the
    timestamps of the frames read after. A group's subscribers got the frame at the
    same instant, so the arrival times are kept as (time, subscribers).

    A change is recognised by the Target's score it sets (each change a new one): a
    watermark cannot tell, since one Target's emission need not cover the other
    partitions the same command wrote to."""

    def __init__(self, subscribers: int) -> None:
        self._group_of = [-1] * subscribers
        self._members: list[tuple[int, ...]] = []
        self._latest: list[float] = []  # per group
        self._expected = math.nan
        self._waiting: set[int] = set()  # groups the current change has not reached yet
        self._left = 0  # their subscribers
        # (perf_counter() of a frame's arrival, subscribers it named) for the expected change.
        self.arrivals: list[tuple[float, int]] = []
        self.all_in = asyncio.Event()

    def group(self, members: Sequence[int]) -> int:
        """A group's number, given the first time a frame names these subscribers."""
        for i in members:
            if self._group_of[i] != -1:
                raise RuntimeError(
                    f"subscriber {i} was named by frames of two different groups; this bench"
                    " expects a stream to group its subscriptions the same way every time"
                )
        g = len(self._members)
        for i in members:
            self._group_of[i] = g
        self._members.append(tuple(members))
        self._latest.append(math.nan)
        return g

    def groups_of(self, subscribers: Sequence[int]) -> list[int]:
        return sorted({self._group_of[i] for i in subscribers})

    def expect(self, score: float, groups: Sequence[int] | None = None) -> None:
        """The next change sets `score` in every group (or in `groups`)."""
        self._expected = score
        among = range(len(self._members)) if groups is None else groups
        self._waiting = {g for g in among if self._latest[g] != score}
        self._left = sum(len(self._members[g]) for g in self._waiting)
        self.arrivals = []
        self.all_in.clear()
        if not self._left:
            self.all_in.set()

    def got(self, group: int, score: float, now: float) -> None:
        if self._latest[group] == score or math.isnan(score):
            return
        self._latest[group] = score
        if score == self._expected and group in self._waiting:
            self._waiting.discard(group)
            n = len(self._members[group])
            self._left -= n
            self.arrivals.append((now, n))
            if not self._left:
                self.all_in.set()

    def settled(self) -> bool:
        """Every subscriber has had its first result."""
        return -1 not in self._group_of and not any(math.isnan(v) for v in self._latest)


def _score(result: query_pb2.QueryResult) -> float:
    """The watched Target's score; NaN while the query_svc mirror has not got it yet."""
    target = entities_pb2.Target()
    if not result.items:
        return math.nan
    if not result.items[0].Unpack(target):
        raise RuntimeError(f"expected a Target, got {result.items[0].type_url}")
    return target.score


async def _read_watch(call: grpc.aio.UnaryStreamCall[bytes, bytes], index: int, cov: _Coverage) -> None:
    group = cov.group([index])
    async for raw in call:
        # The arrival is taken before anything is decoded.
        now = time.perf_counter()
        cov.got(group, _score(query_pb2.QueryResult.FromString(raw)), now)


async def _read_live(
    call: grpc.aio.UnaryStreamCall[bytes, bytes], index_of: dict[str, int], cov: _Coverage
) -> None:
    # A frame's group by its first sub_id and how many more it names: the names are read
    # (every one a new str, ~14,000 per change at 10,000 subscribers) only the first time.
    # The bench takes the grouping the service chose as fixed; tests/test_live_streams.py
    # checks what a grouped frame names.
    groups: dict[tuple[str, int], int] = {}
    async for raw in call:
        now = time.perf_counter()
        frame = live_pb2.LiveFrame.FromString(raw)
        body = frame.WhichOneof("body")
        if body == "error":
            raise RuntimeError(f"subscription {frame.sub_id} failed: {frame.error.message}")
        if body != "query":
            continue
        head = (frame.sub_id, len(frame.more_sub_ids))
        group = groups.get(head)
        if group is None:
            group = groups[head] = cov.group(
                [index_of[frame.sub_id], *(index_of[s] for s in frame.more_sub_ids)]
            )
        cov.got(group, _score(frame.query), now)


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
            command = commands_pb2.ImportTargets(
                targets=[commands_pb2.SetTarget(id=t, name=t, score=float(n + 1)) for t in ids]
            )
            cov.expect(float(n + 1))
            t_send = time.perf_counter()
            await commands.execute(command)
            t_ack = time.perf_counter()
            async with asyncio.timeout(timeout_s):
                await cov.all_in.wait()
            if n >= warmup:
                level.add_change(t_send, t_ack, cov.arrivals)
        level.cpu = meter.stop()
        # Beside them, in the same streams: changes of ONE Target (the subscribers of one
        # query), for what the command's own size costs (not in the CPU figures).
        for n in range(changes):
            q = n % len(ids)
            score = -float(n + 1)
            command = commands_pb2.ImportTargets(
                targets=[commands_pb2.SetTarget(id=ids[q], name=ids[q], score=score)]
            )
            cov.expect(score, cov.groups_of([i for i in range(subscribers) if query_of[i] == q]))
            t_send = time.perf_counter()
            await commands.execute(command)
            t_ack = time.perf_counter()
            async with asyncio.timeout(timeout_s):
                await cov.all_in.wait()
            level.small_last.add(cov.arrivals[-1][0] - t_send)
            level.small_send_ack.add(t_ack - t_send)
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
    "send -> ack p50 ms",
    "ack -> last p50 ms",
    "ack -> last p99 ms",
    "ack -> each p99 ms",
    "send -> last p50 ms",
    "send -> last p99 ms",
    "1 Target: send -> last p50 ms",
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
            ms(lv.send_ack.p50),
            ms(lv.ack_last.p50),
            ms(lv.ack_last.p99),
            ms(lv.ack_each.p99),
            ms(lv.last.p50),
            ms(lv.last.p99),
            ms(lv.small_last.p50),
            ms(lv.query_cpu_per_change_s),
            us(r.per_extra_subscriber_s(lv)),
        ]
        for lv in r.levels
    ]


def issue11_rows(r: MuxFanoutResult) -> list[list[str]]:
    """Target 6 beside the issue's "Now", for bench/report.py's issue 11 table.

    The latency is taken after the ack, as the issue's "Now" (and bench/fanout.py) is:
    from the send it also holds the import's own commit of 100 Targets."""
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
                f"  last subscriber p99 after the ack ({what}; from the send: "
                + ("-" if not lv.last else f"{lv.last.p99 * 1000:.0f} ms")
                + ")",
                "-",
                "-" if not lv.ack_last else f"{lv.ack_last.p99 * 1000:.0f} ms",
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


def run_on_stack(
    stack: Stack,
    ports: MykoPorts,
    kafka: LocalKafka,
    *,
    subscribers: int,
    queries: int,
    changes: int,
    warmup: int,
    levels: list[str],
    say: Callable[[str], None],
    per_stream: int = 256,
) -> MuxFanoutResult:
    """This phase on a started stack, metering its services, the broker and this process."""
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
                subscribers=subscribers,
                queries=queries,
                changes=changes,
                warmup=warmup,
                run_id="0",
                levels=levels,
                per_stream=per_stream,
                say=say,
            )
        finally:
            await channel.close(None)

    return asyncio.run(run())


def main(argv: Sequence[str] | None = None) -> int:
    """This phase alone, on a local Kafka and a fresh stack (the full bench runs it too)."""
    import sys
    import uuid
    from pathlib import Path

    from bench.services import myko_stack

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
            result = run_on_stack(
                stack,
                ports,
                kafka,
                subscribers=a.subscribers,
                queries=a.queries,
                changes=a.changes,
                warmup=a.warmup,
                levels=a.levels.split(","),
                per_stream=a.per_stream,
                say=say,
            )
    finally:
        kafka.stop()
    print(title(result))
    widths = [max(len(h), *(len(row[i]) for row in rows(result))) for i, h in enumerate(HEAD)]
    for row in (HEAD, *rows(result)):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
