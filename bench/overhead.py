"""Observability's overhead: the same sequential commands with metrics and tracing ON and OFF.

Two stacks (repo_svc, command_svc, query_svc) run at once on the same broker,
each on its own topics, one with observability ON and one OFF. Commands
alternate between them in blocks (OFF first in even rounds, ON first in odd
ones), so whatever else loads the machine lands on both alike, and each side
measures what `end_to_end.py` does: send -> ack and send -> the first emission
of an open AllTargets Watch that covers the write.

ON is what a production deployment runs: tracing with the default sampler
(parentbased_traceidratio at 0.1: a caller's decision wins, 1 in 10 of the
traces started here kept) exporting OTLP over gRPC to a
receiver process (otlp_sink.py, standing in for a collector), metrics kept and
served, scraped the way `myko run --prometheus` does (every 5 s), and the
ServiceStatus reports written. OFF: OTEL_SDK_DISABLED=true, no metrics port, no
status reports (the series are still counted in memory: that is not optional).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
from targets.v1 import commands_pb2, queries_pb2

from bench.client import CHANNEL_OPTIONS, CommandClient, WatchStream, needed_positions
from bench.cpu import load_average
from bench.end_to_end import create_targets
from bench.samples import Samples
from myko.local.ports import free_port

TARGET_PCT = 5.0


def observability_env(on: bool, *, otlp_port: int) -> dict[str, str]:
    """The services' environment for each side (docs/observability.md explains the variables)."""
    if not on:
        return {"OTEL_SDK_DISABLED": "true", "MYKO_STATUS_INTERVAL_MS": "0"}
    return {
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        # The default, spelt out so a developer's shell cannot change what is measured.
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
        "MYKO_STATUS_INTERVAL_MS": "10000",
    }


SCRAPE_INTERVAL_S = 5.0


async def scrape_forever(ports: Sequence[int], interval_s: float = SCRAPE_INTERVAL_S) -> None:
    """GET /metrics from every port each interval, as Prometheus would; until cancelled."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=interval_s)) as http:
        while True:
            for port in ports:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                    resp.raise_for_status()
                    await resp.read()
            await asyncio.sleep(interval_s)


@dataclass
class SideResult:
    send_to_ack: Samples = field(default_factory=Samples)
    send_to_emission: Samples = field(default_factory=Samples)


@dataclass
class OverheadResult:
    off: SideResult
    on: SideResult
    rounds: int
    per_round: int
    # Spans the receiver got from the ON stack (None: it did not report).
    spans_exported: int | None
    load_before: str
    load_after: str

    @staticmethod
    def delta_pct(off: float, on: float) -> float:
        return math.nan if not off or math.isnan(off) or math.isnan(on) else 100.0 * (on - off) / off

    @property
    def met(self) -> bool:
        # Judged on the change as printed (one decimal), so the verdict agrees with the table.
        return (
            round(self.delta_pct(self.off.send_to_emission.p50, self.on.send_to_emission.p50), 1)
            <= TARGET_PCT
        )


class OtlpSink:
    """bench/otlp_sink.py as a process: started, then stopped with the span count it received."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self._log_path = log_path
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> OtlpSink:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.otlp_sink", str(self.port)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self._proc = proc
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            proc.kill()
            raise RuntimeError(f"OTLP receiver did not start (see {self._log_path})")
        return self

    def stop(self) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None
        lines = out.split()
        return int(lines[-1]) if lines and lines[-1].isdigit() else None

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Side:
    name: str
    command_addr: str
    query_addr: str
    metrics_ports: tuple[int, ...] = ()


class _Runner:
    """One side's client: a Watch on its targets, and commands timed to their emission."""

    def __init__(self, side: Side, *, targets: int) -> None:
        self.side = side
        self.ids = [f"overhead-{i:03d}" for i in range(targets)]
        self._command_channel = grpc.aio.insecure_channel(side.command_addr, options=CHANNEL_OPTIONS)
        self._query_channel = grpc.aio.insecure_channel(side.query_addr, options=CHANNEL_OPTIONS)
        self.commands = CommandClient(self._command_channel)
        self.stream: WatchStream | None = None
        self._cursor = 0
        self._sent = 0

    async def start(self, timeout_s: float) -> None:
        await create_targets(self.commands, self.ids)
        self.stream = WatchStream(self._query_channel, queries_pb2.AllTargets())
        async with asyncio.timeout(timeout_s):
            await self.stream.wait_emissions(1)
        self._cursor = len(self.stream.emissions)

    async def run(self, count: int, out: SideResult | None, timeout_s: float) -> None:
        assert self.stream is not None
        for _ in range(count):
            target = self.ids[self._sent % len(self.ids)]
            self._sent += 1
            t_send = time.perf_counter()
            result = await self.commands.execute(commands_pb2.RecordHits(id=target, count=1))
            t_ack = time.perf_counter()
            async with asyncio.timeout(timeout_s):
                idx = await self.stream.first_covering(
                    needed_positions(result.visible_at), start=self._cursor
                )
            self._cursor = idx + 1
            if out is not None:
                out.send_to_ack.add(t_ack - t_send)
                out.send_to_emission.add(self.stream.emissions[idx].received_s - t_send)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.close()
        await self._command_channel.close(None)
        await self._query_channel.close(None)


async def measure_overhead(
    sides: Mapping[bool, Side],
    *,
    rounds: int,
    per_round: int,
    warmup: int,
    targets: int = 10,
    timeout_s: float = 10.0,
) -> tuple[SideResult, SideResult, str, str]:
    """(OFF, ON, load average before, after): `rounds` blocks of `per_round` commands per side."""
    runners = {on: _Runner(side, targets=targets) for on, side in sides.items()}
    results = {False: SideResult(), True: SideResult()}
    scrapers = [
        asyncio.create_task(scrape_forever(s.metrics_ports)) for s in sides.values() if s.metrics_ports
    ]
    try:
        for runner in runners.values():
            await runner.start(timeout_s)
        for runner in runners.values():
            await runner.run(warmup, None, timeout_s)
        load_before = load_average()
        for r in range(rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                await runners[on].run(per_round, results[on], timeout_s)
        load_after = load_average()
    finally:
        for task in scrapers:
            task.cancel()
        for task in scrapers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in runners.values():
            await runner.close()
    return results[False], results[True], load_before, load_after
