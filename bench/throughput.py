"""Command throughput with N concurrent clients.

Each client is a loop with one Execute in flight at a time, on its own gRPC
channel (its own HTTP/2 connection, as separate callers would have). With
distinct targets each client increments its own Target; with a hot target every
client increments the same one, which exercises the no-lost-update rule (stale
proposals are re-run inside the command writer). Every level runs for a fixed
duration after a short warm-up; the hot run also checks that no hit was lost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc
from targets.v1 import commands_pb2, entities_pb2

from bench.client import CHANNEL_OPTIONS, CommandClient
from bench.cpu import CpuMeter, CpuUse
from bench.end_to_end import create_targets
from bench.samples import Samples


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


async def _client(
    commands: CommandClient, target_id: str, *, start_s: float, stop_s: float, out: ThroughputResult
) -> int:
    """Runs until stop_s; returns how many hits it had acknowledged (warm-up included)."""
    acked = 0
    while True:
        t0 = time.perf_counter()
        if t0 >= stop_s:
            return acked
        try:
            await commands.execute(commands_pb2.RecordHits(id=target_id, count=1))
        except grpc.aio.AioRpcError:
            if t0 >= start_s:
                out.errors += 1
            continue
        acked += 1
        if t0 >= start_s:
            out.latency.add(time.perf_counter() - t0)
            out.commands += 1


async def _hit_count(commands: CommandClient, target_id: str) -> int:
    # A no-op write would not tell us the state; RecordHits of 1 returns the new entity.
    result = await commands.execute(commands_pb2.RecordHits(id=target_id, count=1))
    target = entities_pb2.Target()
    result.events[0].entity.Unpack(target)
    return int(target.hit_count) - 1


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
    ids = [f"tp-{run_id}-{i:03d}" for i in range(1 if hot else clients)]
    channels = [grpc.aio.insecure_channel(command_addr, options=CHANNEL_OPTIONS) for _ in range(clients)]
    out = ThroughputResult(clients=clients, hot=hot, commands=0, elapsed_s=0.0)
    try:
        setup = CommandClient(channels[0])
        await create_targets(setup, ids)
        before = await _hit_count(setup, ids[0]) + 1 if hot else 0
        start_s = time.perf_counter() + warmup_s
        stop_s = start_s + duration_s

        async def meter_window() -> None:
            await asyncio.sleep(start_s - time.perf_counter())
            meter.start()

        window = asyncio.create_task(meter_window())
        acked = await asyncio.gather(
            *[
                _client(CommandClient(ch), ids[0 if hot else i], start_s=start_s, stop_s=stop_s, out=out)
                for i, ch in enumerate(channels)
            ]
        )
        await window
        # Counted up to the last reply, which may come after stop_s.
        out.elapsed_s = time.perf_counter() - start_s
        out.cpu = meter.stop()
        if hot:
            after = await _hit_count(setup, ids[0])
            out.lost_updates = before + sum(acked) - after
    finally:
        for ch in channels:
            await ch.close(None)
    return out
