"""Command throughput through ExecuteBatch: what importers and sagas can reach.

`senders` loops, each on its own gRPC channel with one ExecuteBatch of
`batch_size` RecordHits in flight at a time (every command its own tx, as in
the single-Execute phase). Spread: each command hits one of `senders x 16`
Targets; hot: every command of every batch hits the same Target, and the run
checks that no acknowledged hit was lost. Commands/s counts the acknowledged
commands of the batches answered within the measured window (an item that
failed is an error, not a command).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from targets.v1 import commands_pb2, entities_pb2

from bench.client import CHANNEL_OPTIONS, CommandClient, pack
from bench.cpu import CpuMeter, CpuUse
from bench.end_to_end import create_targets
from bench.samples import Samples
from myko.v1 import command_pb2

_EXECUTE_BATCH = "/myko.v1.CommandBus/ExecuteBatch"
TARGETS_PER_SENDER = 16
# How long one batch may take before it counts as failed.
BATCH_TIMEOUT_S = 120.0


@dataclass
class BatchResult:
    senders: int
    batch_size: int
    hot: bool
    commands: int = 0
    elapsed_s: float = 0.0
    latency: Samples = field(default_factory=Samples)  # per batch call
    errors: int = 0  # failed items and failed calls' items
    lost_updates: int | None = None
    cpu: CpuUse | None = None

    @property
    def per_second(self) -> float:
        return self.commands / self.elapsed_s if self.elapsed_s > 0 else 0.0


# One batch of a sender: how many of its commands were (acknowledged, failed).
BatchCall = Callable[[], Awaitable[tuple[int, int]]]


@dataclass
class BatchWindow:
    """What the senders did in the measured window (batches answered inside it)."""

    commands: int = 0
    elapsed_s: float = 0.0
    latency: Samples = field(default_factory=Samples)  # per batch
    errors: int = 0
    cpu: CpuUse | None = None
    acked: list[int] = field(default_factory=list)  # per sender, warm-up included


async def _sender(batch: BatchCall, *, start_s: float, stop_s: float, out: BatchWindow) -> int:
    """Sends batches until stop_s; counts the commands of every batch answered inside the
    window (a batch takes long: counting by start time would miss whole batches)."""
    acked = 0
    while time.perf_counter() < stop_s:
        t0 = time.perf_counter()
        ok, failed = await batch()
        acked += ok
        done = time.perf_counter()
        if start_s <= done <= stop_s:
            out.latency.add(done - t0)
            out.commands += ok
            out.errors += failed
    return acked


async def run_senders(
    batches: Sequence[BatchCall], *, warmup_s: float, duration_s: float, meter: CpuMeter
) -> BatchWindow:
    """One sender per entry of `batches`, each with one batch in flight, for warmup_s +
    duration_s; `meter` measures exactly the window after the warm-up."""
    out = BatchWindow()
    start_s = time.perf_counter() + warmup_s
    stop_s = start_s + duration_s

    async def meter_window() -> None:
        await asyncio.sleep(start_s - time.perf_counter())
        meter.start()
        await asyncio.sleep(stop_s - time.perf_counter())
        out.cpu = meter.stop()

    window = asyncio.create_task(meter_window())
    acked = await asyncio.gather(*[_sender(b, start_s=start_s, stop_s=stop_s, out=out) for b in batches])
    await window
    out.elapsed_s = stop_s - start_s
    out.acked = list(acked)
    return out


def target_ids(run_id: str, senders: int) -> list[list[str]]:
    """Each sender's own Targets (spread runs), ids as the Myko phase names them."""
    return [[f"bt-{run_id}-{s:02d}-{i:02d}" for i in range(TARGETS_PER_SENDER)] for s in range(senders)]


class _BatchClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._call = channel.unary_unary(
            _EXECUTE_BATCH,
            request_serializer=command_pb2.CommandBatchRequest.SerializeToString,
            response_deserializer=command_pb2.CommandBatchResult.FromString,
        )

    def batches(self, target_ids: list[str], size: int) -> BatchCall:
        """Batches of `size` RecordHits over `target_ids`, round robin; a failed call fails all."""

        async def batch() -> tuple[int, int]:
            request = command_pb2.CommandBatchRequest(
                commands=[
                    command_pb2.CommandRequest(
                        tx=str(uuid.uuid4()),
                        command=pack(commands_pb2.RecordHits(id=target_ids[i % len(target_ids)], count=1)),
                    )
                    for i in range(size)
                ]
            )
            try:
                answer: command_pb2.CommandBatchResult = await self._call(request, timeout=BATCH_TIMEOUT_S)
            except grpc.aio.AioRpcError:
                return 0, size
            ok = sum(1 for o in answer.outcomes if o.HasField("result"))
            return ok, len(answer.outcomes) - ok

        return batch


async def _hit_count(commands: CommandClient, target_id: str) -> int:
    result = await commands.execute(commands_pb2.RecordHits(id=target_id, count=1))
    target = entities_pb2.Target()
    result.events[0].entity.Unpack(target)
    return int(target.hit_count) - 1


async def measure_batch_throughput(
    command_addr: str,
    *,
    senders: int,
    batch_size: int,
    hot: bool,
    duration_s: float,
    warmup_s: float,
    run_id: str,
    meter: CpuMeter,
) -> BatchResult:
    channels = [grpc.aio.insecure_channel(command_addr, options=CHANNEL_OPTIONS) for _ in range(senders)]
    ids = target_ids(run_id, senders)
    hot_id = f"bt-{run_id}-hot"
    try:
        setup = CommandClient(channels[0])
        await create_targets(setup, [hot_id] if hot else [i for per in ids for i in per])
        before = await _hit_count(setup, hot_id) + 1 if hot else 0
        w = await run_senders(
            [
                _BatchClient(ch).batches([hot_id] if hot else ids[s], batch_size)
                for s, ch in enumerate(channels)
            ],
            warmup_s=warmup_s,
            duration_s=duration_s,
            meter=meter,
        )
        out = BatchResult(
            senders=senders,
            batch_size=batch_size,
            hot=hot,
            commands=w.commands,
            elapsed_s=w.elapsed_s,
            latency=w.latency,
            errors=w.errors,
            cpu=w.cpu,
        )
        if hot:
            after = await _hit_count(setup, hot_id)
            out.lost_updates = before + sum(w.acked) - after
    finally:
        for ch in channels:
            await ch.close(None)
    return out


BATCH_HEAD = [
    "Senders x batch",
    "Targets",
    "Commands",
    "Seconds",
    "Commands/s",
    "batch p50 ms",
    "batch p99 ms",
    "Errors",
    "Lost updates",
    "command ms CPU/cmd",
    "kafka ms CPU/cmd",
]


def _per_command(b: BatchResult, name: str) -> str:
    if not b.commands or b.cpu is None:
        return "-"
    return f"{1000 * b.cpu.seconds.get(name, 0.0) / b.commands:.3f}"


def batch_rows(results: list[BatchResult]) -> list[list[str]]:
    return [
        [
            f"{b.senders} x {b.batch_size}",
            "1 hot target" if b.hot else f"{TARGETS_PER_SENDER} per sender",
            str(b.commands),
            f"{b.elapsed_s:.1f}",
            f"{b.per_second:.0f}",
            f"{1000 * b.latency.p50:.2f}" if len(b.latency) else "-",
            f"{1000 * b.latency.p99:.2f}" if len(b.latency) else "-",
            str(b.errors),
            "-" if b.lost_updates is None else str(b.lost_updates),
            _per_command(b, "command"),
            _per_command(b, "kafka"),
        ]
        for b in results
    ]
