"""Command throughput with N concurrent clients, beside the raw gRPC unary floor at the same N.

Each client is a loop with one Execute in flight at a time, on its own gRPC
channel (its own HTTP/2 connection, as separate callers would have). With
distinct targets each client increments its own Target; with a hot target every
client increments the same one, which exercises the no-lost-update rule (stale
proposals are re-run inside the command writer). Every level runs for a fixed
duration after a short warm-up; the hot run also checks that no hit was lost.

The raw floor (`measure_unary_floor`) runs the same loops against a bare
grpc.aio server in its own process (bench/transfer_floor.py's FloorServer: no
Myko code, no (de)serializers, no Kafka) that answers every call with as many
bytes as an Execute of RecordHits returns, to requests as large as that
Execute's (`execute_sizes` measures both in the run). What is left of a Myko
rate below the floor's is Myko's; the floor is what gRPC alone allows here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from targets.v1 import commands_pb2, entities_pb2

from bench.client import CHANNEL_OPTIONS, CommandClient
from bench.cpu import CpuMeter, CpuUse
from bench.end_to_end import create_targets
from bench.samples import Samples
from bench.transfer_floor import unary_get

# One call of a client loop; it raises grpc.aio.AioRpcError when the call failed.
Call = Callable[[], Awaitable[object]]


@dataclass
class LoopWindow:
    """What the client loops did in the measured window (calls started inside it)."""

    calls: int = 0
    elapsed_s: float = 0.0
    latency: Samples = field(default_factory=Samples)
    errors: int = 0
    cpu: CpuUse | None = None
    acked: list[int] = field(default_factory=list)  # per loop, warm-up included


async def _loop(call: Call, *, start_s: float, stop_s: float, out: LoopWindow) -> int:
    """Runs until stop_s; returns how many calls succeeded (warm-up included)."""
    acked = 0
    while True:
        t0 = time.perf_counter()
        if t0 >= stop_s:
            return acked
        try:
            await call()
        except grpc.aio.AioRpcError:
            if t0 >= start_s:
                out.errors += 1
            continue
        acked += 1
        if t0 >= start_s:
            out.latency.add(time.perf_counter() - t0)
            out.calls += 1


async def run_loops(
    calls: Sequence[Call], *, warmup_s: float, duration_s: float, meter: CpuMeter
) -> LoopWindow:
    """One loop per call, each with one call in flight, for warmup_s + duration_s; `meter`
    measures the window after the warm-up."""
    out = LoopWindow()
    start_s = time.perf_counter() + warmup_s
    stop_s = start_s + duration_s

    async def meter_window() -> None:
        await asyncio.sleep(start_s - time.perf_counter())
        meter.start()

    window = asyncio.create_task(meter_window())
    acked = await asyncio.gather(*[_loop(call, start_s=start_s, stop_s=stop_s, out=out) for call in calls])
    await window
    # Counted up to the last reply, which may come after stop_s.
    out.elapsed_s = time.perf_counter() - start_s
    out.cpu = meter.stop()
    out.acked = list(acked)
    return out


@dataclass
class ThroughputResult:
    clients: int
    hot: bool
    commands: int
    elapsed_s: float
    latency: Samples = field(default_factory=Samples)
    errors: int = 0
    lost_updates: int | None = None  # hot runs: increments acknowledged but missing
    cpu: CpuUse | None = None  # during the measured window

    @property
    def per_second(self) -> float:
        return self.commands / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _hits(client: CommandClient, target_id: str) -> Call:
    async def call() -> object:
        return await client.execute(commands_pb2.RecordHits(id=target_id, count=1))

    return call


async def _hit_count(commands: CommandClient, target_id: str) -> int:
    # A no-op write would not tell us the state; RecordHits of 1 returns the new entity.
    result = await commands.execute(commands_pb2.RecordHits(id=target_id, count=1))
    target = entities_pb2.Target()
    result.events[0].entity.Unpack(target)
    return int(target.hit_count) - 1


def _target_ids(run_id: str, count: int) -> list[str]:
    return [f"tp-{run_id}-{i:03d}" for i in range(count)]


async def measure_throughput(
    command_addr: str,
    *,
    clients: int,
    hot: bool,
    duration_s: float,
    warmup_s: float,
    run_id: str,
    meter: CpuMeter,
) -> ThroughputResult:
    ids = _target_ids(run_id, 1 if hot else clients)
    channels = [grpc.aio.insecure_channel(command_addr, options=CHANNEL_OPTIONS) for _ in range(clients)]
    try:
        setup = CommandClient(channels[0])
        await create_targets(setup, ids)
        before = await _hit_count(setup, ids[0]) + 1 if hot else 0
        w = await run_loops(
            [_hits(CommandClient(ch), ids[0 if hot else i]) for i, ch in enumerate(channels)],
            warmup_s=warmup_s,
            duration_s=duration_s,
            meter=meter,
        )
        out = ThroughputResult(
            clients=clients,
            hot=hot,
            commands=w.calls,
            elapsed_s=w.elapsed_s,
            latency=w.latency,
            errors=w.errors,
            cpu=w.cpu,
        )
        if hot:
            after = await _hit_count(setup, ids[0])
            out.lost_updates = before + sum(w.acked) - after
    finally:
        for ch in channels:
            await ch.close(None)
    return out


@dataclass(frozen=True)
class ExecuteSizes:
    """Serialised bytes of one Execute of RecordHits as the throughput clients send it."""

    request: int
    reply: int


async def execute_sizes(command_addr: str, *, run_id: str) -> ExecuteSizes:
    """Measured on a real call (a Target id as long as the throughput clients' ones)."""
    async with grpc.aio.insecure_channel(command_addr, options=CHANNEL_OPTIONS) as channel:
        client = CommandClient(channel)
        [target_id] = _target_ids(run_id, 1)
        await create_targets(client, [target_id])
        hits = commands_pb2.RecordHits(id=target_id, count=1)
        reply = await client.execute(hits)
        return ExecuteSizes(request=client.request(hits).ByteSize(), reply=reply.ByteSize())


@dataclass
class UnaryFloorResult:
    """The raw gRPC floor at one concurrency level: calls to a bare server, as Myko's Executes."""

    clients: int
    sizes: ExecuteSizes
    calls: int
    elapsed_s: float
    latency: Samples = field(default_factory=Samples)
    errors: int = 0
    cpu: CpuUse | None = None  # "floor" is the bare server's process

    @property
    def per_second(self) -> float:
        return self.calls / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def cpu_ms_per_call(self, name: str) -> float | None:
        if self.cpu is None or not self.calls or name not in self.cpu.seconds:
            return None
        return 1000 * self.cpu.seconds[name] / self.calls


def _unary(channel: grpc.aio.Channel, request: bytes) -> Call:
    get = unary_get(channel)

    async def call() -> object:
        return await get(request, timeout=30.0)

    return call


async def measure_unary_floor(
    address: str,
    *,
    clients: int,
    sizes: ExecuteSizes,
    duration_s: float,
    warmup_s: float,
    meter: CpuMeter,
) -> UnaryFloorResult:
    """`clients` loops against a FloorServer at `address` (serving `sizes.reply` bytes), each on
    its own channel sending `sizes.request` bytes, as measure_throughput drives Execute."""
    request = bytes(sizes.request)
    channels = [grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) for _ in range(clients)]
    try:
        w = await run_loops(
            [_unary(ch, request) for ch in channels], warmup_s=warmup_s, duration_s=duration_s, meter=meter
        )
    finally:
        for ch in channels:
            await ch.close(None)
    return UnaryFloorResult(
        clients=clients,
        sizes=sizes,
        calls=w.calls,
        elapsed_s=w.elapsed_s,
        latency=w.latency,
        errors=w.errors,
        cpu=w.cpu,
    )
