"""Fan-out: the same query watched by 1 and by many subscribers.

Identical subscriptions share one evaluation and one serialised payload, so the
server's cost per change should stay flat as subscribers are added; what does
grow is writing the same bytes to each stream. Each subscriber has its own
channel (its own connection, as separate browsers or services would). Per
sequential command we take ack -> emission at the first and at the last
subscriber, and the CPU time per command of each process (bench/cpu.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc
from targets.v1 import commands_pb2, queries_pb2

from bench.client import CHANNEL_OPTIONS, CommandClient, WatchStream, needed_positions
from bench.cpu import CpuMeter, CpuUse
from bench.end_to_end import create_targets
from bench.samples import Samples


@dataclass
class FanoutResult:
    subscribers: int
    commands: int
    first_subscriber: Samples = field(default_factory=Samples)  # ack -> first stream has it
    last_subscriber: Samples = field(default_factory=Samples)  # ack -> every stream has it
    cpu: CpuUse | None = None  # during the measured commands


async def measure_fanout(
    *,
    command_channel: grpc.aio.Channel,
    query_addr: str,
    meter: CpuMeter,
    subscribers: int,
    count: int,
    warmup: int,
    run_id: str,
    timeout_s: float = 15.0,
) -> FanoutResult:
    commands = CommandClient(command_channel)
    target_id = f"fanout-{run_id}"
    await create_targets(commands, [target_id])
    channels = [grpc.aio.insecure_channel(query_addr, options=CHANNEL_OPTIONS) for _ in range(subscribers)]
    streams = [WatchStream(ch, queries_pb2.TargetById(id=target_id)) for ch in channels]
    out = FanoutResult(subscribers=subscribers, commands=count)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*[s.wait_emissions(1) for s in streams])
        cursors = [len(s.emissions) for s in streams]
        for i in range(warmup + count):
            if i == warmup:
                meter.start()
            result = await commands.execute(commands_pb2.RecordHits(id=target_id, count=1))
            t_ack = time.perf_counter()
            needed = needed_positions(result.visible_at)
            async with asyncio.timeout(timeout_s):
                found = await asyncio.gather(
                    *[s.first_covering(needed, start=c) for s, c in zip(streams, cursors, strict=True)]
                )
            arrivals = [s.emissions[idx].received_s for s, idx in zip(streams, found, strict=True)]
            cursors = [idx + 1 for idx in found]
            if i >= warmup:
                out.first_subscriber.add(min(arrivals) - t_ack)
                out.last_subscriber.add(max(arrivals) - t_ack)
        out.cpu = meter.stop()
    finally:
        await asyncio.gather(*[s.close() for s in streams])
        for ch in channels:
            await ch.close(None)
    return out
