"""A well-behaved client that keeps working while the hostile suite runs.

A process of its own (`python -m hostile.bystander`) sends a steady trickle
of valid commands (SetTarget of one target, score 1, 2, 3, ...) and watches
that target four ways: QueryBus/Watch and ReportBus/Watch straight to the
services, and a query and a report through the gateway's LiveBus. It reports
each command and emission as a JSON line; the parent (`Bystander`) collects
them. Every emission must show a score that was sent, never going back; the
delay of a score is from sending its command to the first emission (on each
watch) that shows it or a later one. The parent also samples every service's
RSS while the bystander runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from grpc_web_client import BINARY, FrameReader, frame
from myko_client import Clients, pack, unpack
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

from myko.v1 import item_pb2, live_pb2, query_pb2, report_pb2

from .stack import ROOT, HostileStack

TARGET = "bystander-1"
ZONE = "bystander-z"
TRICKLE_INTERVAL_S = 0.25
SAMPLE_INTERVAL_S = 0.5
WATCHES = ("query", "report", "live-query", "live-report")


@dataclass
class Record:
    sent: dict[int, float] = field(default_factory=dict)  # score -> when its command was sent
    acked: dict[int, float] = field(default_factory=dict)
    seen: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: {w: [] for w in WATCHES})
    errors: list[str] = field(default_factory=list)

    def delays(self) -> dict[str, float]:
        """Per watch, the worst delay from sending a score to seeing it (or a later one)."""
        return {watch: self.worst(watch)[1] for watch in self.seen}

    def worst(self, watch: str) -> tuple[int, float]:
        """The score with the longest delay on `watch`, and that delay (inf: never shown)."""
        out = (-1, 0.0)
        for score, sent_at in self.sent.items():
            if score not in self.acked:
                continue
            shown = next((t for t, v in self.seen[watch] if v >= score and t >= sent_at), None)
            delay = float("inf") if shown is None else shown - sent_at
            if delay > out[1]:
                out = (score, delay)
        return out

    def dump(self, path: Path) -> None:
        path.write_text(
            json.dumps({"sent": self.sent, "acked": self.acked, "seen": self.seen, "errors": self.errors})
        )

    def describe(self) -> str:
        """Per watch: how many emissions, and the last value with its age, for a failure message."""
        now = time.monotonic()
        last = max(self.acked) if self.acked else None
        parts = [f"last acked score {last}", f"worst scores {[(w, self.worst(w)) for w in self.seen]}"]
        for watch, emissions in self.seen.items():
            if emissions:
                t, v = emissions[-1]
                parts.append(f"{watch}: {len(emissions)} emissions, last {v} {now - t:.1f}s ago")
            else:
                parts.append(f"{watch}: no emission")
        return "; ".join(parts)

    def settled(self) -> bool:
        last = max(self.acked)
        return all(em and em[-1][1] >= last for em in self.seen.values())

    def wrong_values(self) -> list[str]:
        out = []
        for watch, emissions in self.seen.items():
            last = -1
            for _, v in emissions:
                if v not in self.sent and v != 0:
                    out.append(f"{watch} showed score {v}, which was never sent")
                if v < last:
                    out.append(f"{watch} went back from {last} to {v}")
                last = max(last, v)
        return out


class Bystander:
    """The parent's side: runs `python -m hostile.bystander` and collects what it reports.

    A process of its own, so its timings are a client's, not slowed by the
    fuzzer sharing its interpreter; its clock (CLOCK_MONOTONIC) is the same.
    """

    def __init__(self, stack: HostileStack, *, log_path: Path) -> None:
        self._stack = stack
        self.record = Record()
        self._log_path = log_path
        self._proc: subprocess.Popen[str] | None = None
        self._reader = threading.Thread(target=self._read, name="bystander-reader", daemon=True)
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()

    def start(self, *, timeout_s: float = 90.0) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in (".", "tests", "examples/targets")),
            "PYTHONUNBUFFERED": "1",
        }
        addrs = [self._stack.addr(s) for s in ("command", "query", "report", "gateway")]
        with self._log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "hostile.bystander", *addrs],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self._reader.start()
        if not self._ready.wait(timeout_s) or not self.running:
            raise RuntimeError(
                f"the bystander's watches gave no first value within {timeout_s}s: "
                f"{self.record.errors} {self._log_path.read_text()[-2000:]}"
            )
        self._sampler.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def settle(self, *, timeout_s: float) -> bool:
        """Stop sending; True once every watch shows the last acknowledged score.

        The command in flight when the trickle is told to stop still completes:
        only once the bystander reports it stopped is the last score known.
        """
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write("settle\n")
        self._proc.stdin.flush()
        if not self._stopped.wait(60):
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self.record.acked and self.record.settled():
                    return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._done.set()
        if self._proc is not None:
            with contextlib.suppress(OSError):
                assert self._proc.stdin is not None
                self._proc.stdin.close()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for thread in (self._reader, self._sampler):
            if thread.ident is not None:  # started
                thread.join(5)

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            event = json.loads(line)
            with self._lock:
                kind = event["e"]
                if kind == "sent":
                    self.record.sent[event["v"]] = event["t"]
                elif kind == "acked":
                    self.record.acked[event["v"]] = event["t"]
                elif kind == "seen":
                    self.record.seen[event["w"]].append((event["t"], event["v"]))
                elif kind == "error":
                    self.record.errors.append(event["m"])
                elif kind == "ready":
                    self._ready.set()
                elif kind == "stopped":
                    self._stopped.set()
        if not self._done.is_set():
            self.record.errors.append("the bystander process ended early")
        self._ready.set()

    def _sample(self) -> None:
        while not self._done.wait(SAMPLE_INTERVAL_S):
            self._stack.sample()


# -- the bystander process ------------------------------------------------------------------------


def _emit(**event: object) -> None:
    print(json.dumps(event), flush=True)


async def _trickle(clients: Clients, trickling: asyncio.Event) -> None:
    score = 0
    while trickling.is_set():
        score += 1
        _emit(e="sent", v=score, t=time.monotonic())
        try:
            await clients.execute(_target(score), timeout_s=30)
            _emit(e="acked", v=score, t=time.monotonic())
        except grpc.aio.AioRpcError as exc:
            _emit(e="error", m=f"SetTarget score={score}: {exc.code().name} {exc.details()}")
        await asyncio.sleep(TRICKLE_INTERVAL_S)
    _emit(e="stopped", v=score)


def _seen(watch: str, value: int, first: asyncio.Event) -> None:
    _emit(e="seen", w=watch, v=value, t=time.monotonic())
    first.set()


async def _watch_query(clients: Clients, fence: item_pb2.Watermark, first: asyncio.Event) -> None:
    stream = clients.watch(queries_pb2.TargetById(id=TARGET), at_least=fence)
    try:
        while True:
            _seen("query", _query_score(await stream.read()), first)
    except (AssertionError, grpc.aio.AioRpcError) as exc:
        _emit(e="error", m=f"query watch ended: {exc}")
    finally:
        stream.cancel()


async def _watch_report(clients: Clients, fence: item_pb2.Watermark, first: asyncio.Event) -> None:
    stream = clients.watch_report(reports_pb2.ZoneTotals(zone_id=ZONE), at_least=fence)
    try:
        while True:
            _seen("report", _report_score(await stream.read()), first)
    except (AssertionError, grpc.aio.AioRpcError) as exc:
        _emit(e="error", m=f"report watch ended: {exc}")
    finally:
        stream.cancel()


async def _watch_live(
    http: aiohttp.ClientSession, gateway: str, fence: item_pb2.Watermark, first: dict[str, asyncio.Event]
) -> None:
    req = live_pb2.LiveOpen(
        subscriptions=[
            live_pb2.LiveSubscription(
                sub_id="q",
                query=query_pb2.QueryRequest(query=pack(queries_pb2.TargetById(id=TARGET)), at_least=fence),
            ),
            live_pb2.LiveSubscription(
                sub_id="r",
                report=report_pb2.ReportRequest(
                    report=pack(reports_pb2.ZoneTotals(zone_id=ZONE)), at_least=fence
                ),
            ),
        ]
    )
    headers = {"Content-Type": BINARY, "X-Grpc-Web": "1"}
    url = f"http://{gateway}/myko.v1.LiveBus/Open"
    async with http.post(url, data=frame(req.SerializeToString()), headers=headers) as resp:
        async for flag, payload in FrameReader(resp, text=False).frames():
            if flag & 0x80:
                _emit(e="error", m=f"LiveBus stream ended: {payload!r}")
                return
            lf = live_pb2.LiveFrame.FromString(payload)
            which = lf.WhichOneof("body")
            if which == "query":
                _seen("live-query", _query_score(lf.query), first["live-query"])
            elif which == "report":
                _seen("live-report", _report_score(lf.report), first["live-report"])
            elif which == "error":
                _emit(e="error", m=f"LiveBus {lf.sub_id} failed: {lf.error.code} {lf.error.message}")
    _emit(e="error", m="LiveBus stream ended without a trailer")


async def _reported(what: str, work: Coroutine[Any, Any, None]) -> None:
    """Runs `work`; any way it fails is reported, so a watch never just goes quiet."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        _emit(e="error", m=f"{what} failed: {type(exc).__name__}: {exc}")


async def _commands(trickling: asyncio.Event, finished: asyncio.Event) -> None:
    """stdin: "settle" stops the trickle; end of input ends the process."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            finished.set()
            return
        if line.strip() == "settle":
            trickling.clear()


async def _main(command: str, query: str, report: str, gateway: str) -> None:
    clients = Clients(
        command=grpc.aio.insecure_channel(command),
        query=grpc.aio.insecure_channel(query),
        report=grpc.aio.insecure_channel(report),
    )
    trickling, finished = asyncio.Event(), asyncio.Event()
    trickling.set()
    try:
        await clients.execute(commands_pb2.SetZone(id=ZONE, name="bystander zone"))
        # Every watch starts at or after the seed (read-your-writes): its first value is score 0.
        fence = (await clients.execute(_target(0))).visible_at
        _emit(e="sent", v=0, t=time.monotonic())
        _emit(e="acked", v=0, t=time.monotonic())
        async with aiohttp.ClientSession() as http:
            first = {w: asyncio.Event() for w in WATCHES}
            tasks = [
                asyncio.create_task(_reported("query watch", _watch_query(clients, fence, first["query"]))),
                asyncio.create_task(
                    _reported("report watch", _watch_report(clients, fence, first["report"]))
                ),
                asyncio.create_task(_reported("LiveBus watch", _watch_live(http, gateway, fence, first))),
                asyncio.create_task(_commands(trickling, finished)),
            ]
            async with asyncio.timeout(60):
                for ev in first.values():
                    await ev.wait()
            _emit(e="ready")
            tasks.append(asyncio.create_task(_trickle(clients, trickling)))
            await finished.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await clients.close()


def _target(score: int) -> commands_pb2.SetTarget:
    return commands_pb2.SetTarget(id=TARGET, name="bystander", score=float(score), zone_id=ZONE)


def _query_score(result: query_pb2.QueryResult) -> int:
    targets = [unpack(a, entities_pb2.Target) for a in result.items]
    return int(targets[0].score) if targets else -1


def _report_score(result: report_pb2.ReportResult) -> int:
    value = unpack(result.value, reports_pb2.ZoneTotalsValue)
    return int(value.zones[0].score_total) if value.zones else -1


if __name__ == "__main__":
    asyncio.run(_main(*sys.argv[1:5]))
