"""The raw floors' bookkeeping (no broker, no server): what the client loops count, and what a
bare reader waits for."""

from __future__ import annotations

import asyncio
import os
from typing import Any, cast

import grpc
from aiokafka import AIOKafkaConsumer

from bench.batch_floor import RecordSample, _Reader, merged
from bench.batch_throughput import run_senders
from bench.cpu import CpuMeter, CpuUse
from bench.samples import Samples
from bench.throughput import ExecuteSizes, UnaryFloorResult, run_loops


def _meter() -> CpuMeter:
    return CpuMeter({"bench": os.getpid()})


def _failed() -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), None, None
    )


async def test_the_client_loops_count_answered_calls_and_failed_ones_apart() -> None:
    made = 0

    async def every_third_fails() -> object:
        nonlocal made
        made += 1
        await asyncio.sleep(0)
        if made % 3 == 0:
            raise _failed()
        return b""

    w = await run_loops([every_third_fails, every_third_fails], warmup_s=0.0, duration_s=0.05, meter=_meter())
    assert w.calls > 0 and w.errors > 0
    assert w.calls + w.errors == made  # no warm-up: every call is in the window
    assert sum(w.acked) == w.calls and len(w.acked) == 2
    assert len(w.latency) == w.calls
    assert w.cpu is not None and "bench" in w.cpu.seconds


async def test_the_warm_up_calls_are_acknowledged_but_not_counted() -> None:
    async def answer() -> object:
        await asyncio.sleep(0.001)
        return b""

    w = await run_loops([answer], warmup_s=0.05, duration_s=0.02, meter=_meter())
    assert sum(w.acked) > w.calls > 0


async def test_the_senders_count_each_batchs_acknowledged_and_failed_commands() -> None:
    async def batch() -> tuple[int, int]:
        await asyncio.sleep(0.001)
        return 3, 1

    w = await run_senders([batch, batch], warmup_s=0.0, duration_s=0.05, meter=_meter())
    batches = len(w.latency)
    assert batches > 0
    assert (w.commands, w.errors) == (3 * batches, batches)
    assert sum(w.acked) >= w.commands  # a batch answered after the window is acknowledged, not counted


def test_cpu_per_call_is_per_measured_call_and_absent_for_an_unmeasured_process() -> None:
    f = UnaryFloorResult(
        clients=8,
        sizes=ExecuteSizes(request=97, reply=464),
        calls=2000,
        elapsed_s=2.0,
        latency=Samples(),
        cpu=CpuUse({"floor": 0.8, "bench": 0.5}, 2.0),
    )
    assert f.per_second == 1000
    assert f.cpu_ms_per_call("floor") == 0.4 and f.cpu_ms_per_call("bench") == 0.25
    assert f.cpu_ms_per_call("kafka") is None


def test_a_records_size_counts_its_key_value_and_headers() -> None:
    assert RecordSample(b"key", b"value", (("h", b"12"), ("hh", b""))).size == 3 + 5 + 3 + 2


def test_merged_positions_keep_each_partitions_furthest() -> None:
    assert merged([{("t", 0): 5, ("t", 1): 2}, {("t", 0): 3, ("x", 0): 9}]) == {
        ("t", 0): 5,
        ("t", 1): 2,
        ("x", 0): 9,
    }


async def test_a_reader_waits_only_for_the_topics_it_reads() -> None:
    # repo_svc's reader does not read the tx log: a batch must not wait for it to.
    reader = _Reader(cast(AIOKafkaConsumer, cast(Any, None)), ["entity"])
    await asyncio.wait_for(reader.wait_for({("txlog", 0): 10}), 1.0)
    waiting = asyncio.create_task(reader.wait_for({("entity", 1): 4, ("txlog", 0): 10}))
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
