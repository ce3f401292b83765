"""The gateway under hostile load, run as its own process (`python -m gateway`).

Its own process so that what is measured is the gateway alone: how long
`/healthz` waits while huge or pathological requests are being read, and how
much memory pages that stop reading pin.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from gateway_fakes import BIG_RESULT_BYTES, FakeBackend, start_fake_backend
from google.protobuf import any_pb2
from grpc_web_client import BINARY, TEXT, FrameReader, parse_trailers
from polling import eventually

from myko.v1 import live_pb2, query_pb2, report_pb2

REPO = Path(__file__).resolve().parents[1]
INVALID_ARGUMENT, RESOURCE_EXHAUSTED = 3, 8
_MiB = 1024 * 1024


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[str]
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_bytes(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        assert m is not None
        return int(m.group(1)) * 1024


def _start_gateway(backend_addr: str, ui_dist: Path, extra_env: dict[str, str]) -> GatewayProcess:
    env = {
        **os.environ,
        "MYKO_GATEWAY_PORT": "0",
        "MYKO_COMMAND_ADDR": backend_addr,
        "MYKO_QUERY_ADDR": backend_addr,
        "MYKO_REPORT_ADDR": backend_addr,
        "MYKO_UI_DIST": str(ui_dist),
        "MYKO_LOG_LEVEL": "WARNING",
        "MYKO_AUTH_DISABLED": "true",
        **extra_env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"http://[^:]+:(\d+)", line)
    if m is None:
        proc.kill()
        raise AssertionError(f"gateway did not start: {line!r}")
    return GatewayProcess(proc, int(m.group(1)))


@dataclass
class Env:
    backend: FakeBackend
    gateway: GatewayProcess
    http: aiohttp.ClientSession


@pytest.fixture
def gateway_env() -> dict[str, str]:
    return {}


@pytest.fixture
async def env(tmp_path: Path, gateway_env: dict[str, str]) -> AsyncIterator[Env]:
    backend = await start_fake_backend()
    gateway = await asyncio.to_thread(_start_gateway, backend.addr, tmp_path, gateway_env)
    http = aiohttp.ClientSession()
    try:
        yield Env(backend, gateway, http)
    finally:
        await http.close()
        gateway.proc.terminate()
        await asyncio.to_thread(gateway.proc.wait, 10)
        await backend.server.stop(grace=None)


def _frame(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


async def _chunked(body: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    # An async generator body goes out with Transfer-Encoding: chunked (no Content-Length),
    # so the gateway cannot refuse it from the headers alone.
    for i in range(0, len(body), size):
        yield body[i : i + size]


async def _post_status(
    http: aiohttp.ClientSession, url: str, body: bytes, *, text: bool, chunked: bool
) -> int:
    headers = {"Content-Type": TEXT if text else BINARY}
    data = _chunked(body) if chunked else body
    async with http.post(url, data=data, headers=headers) as resp:
        trailers: dict[str, str] = {}
        async for flag, payload in FrameReader(resp, text=text).frames():
            if flag & 0x80:
                trailers = parse_trailers(payload)
        return int(trailers.get("grpc-status", "-1"))


def _big_sub(sub_id: str) -> live_pb2.LiveSubscription:
    big = any_pb2.Any(type_url="type.googleapis.com/targets.v1.Big")
    return live_pb2.LiveSubscription(sub_id=sub_id, query=query_pb2.QueryRequest(query=big))


def _many_subs_open(count: int) -> bytes:
    """A LiveOpen with `count` valid subscriptions `{sub_id: "s<i>", report: {}}`, encoded by hand (fast)."""
    sample = live_pb2.LiveSubscription(sub_id="s7", report=report_pb2.ReportRequest()).SerializeToString()
    assert sample == b"\x0a\x02s7\x1a\x00"

    def entry(i: int) -> bytes:
        sub_id = b"s%d" % i
        sub = b"\x0a" + bytes([len(sub_id)]) + sub_id + b"\x1a\x00"
        return b"\x0a" + bytes([len(sub)]) + sub

    return b"".join(map(entry, range(count)))


def _healthz_worst_latency(port: int, stop: threading.Event) -> float:
    """Polls /healthz from a thread of its own, so the test's event loop (busy sending) is not measured."""
    worst = 0.0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        while not stop.is_set():
            began = time.monotonic()
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            worst = max(worst, time.monotonic() - began)
            time.sleep(0.02)
    finally:
        conn.close()
    return worst


async def test_hostile_bodies_are_refused_without_stalling_the_gateway(env: Env) -> None:
    base = env.gateway.base
    empty_frames = _frame(b"") * (16 * _MiB // 5)
    text_empty_frames = b"AAA=" * (4 * _MiB)  # 16 MiB of base64 chunks, each one 2 zero bytes
    million = _frame(_many_subs_open(1_000_000))
    quarter_million = _frame(_many_subs_open(250_000))
    assert len(quarter_million) < 4 * _MiB  # under the message limit: refused by the count alone
    execute, live = f"{base}/myko.v1.CommandBus/Execute", f"{base}/myko.v1.LiveBus/Open"
    attacks = [
        (execute, empty_frames, False, False, RESOURCE_EXHAUSTED),  # Content-Length over the limit
        (execute, empty_frames, False, True, INVALID_ARGUMENT),  # a second message
        (execute, text_empty_frames, True, True, INVALID_ARGUMENT),
        (live, million, False, False, RESOURCE_EXHAUSTED),
        (live, million, False, True, RESOURCE_EXHAUSTED),  # frame header over the message limit
        (live, quarter_million, False, True, RESOURCE_EXHAUSTED),  # over 256 subscriptions
    ]
    stop = threading.Event()
    probe = asyncio.create_task(asyncio.to_thread(_healthz_worst_latency, env.gateway.port, stop))
    await asyncio.sleep(0.2)
    began = time.monotonic()
    codes = await asyncio.gather(
        *(_post_status(env.http, url, body, text=text, chunked=ch) for url, body, text, ch, _ in attacks)
    )
    elapsed = time.monotonic() - began
    stop.set()
    worst = await probe
    print(
        f"hostile bodies answered in {elapsed:.2f} s; worst /healthz latency meanwhile {worst * 1000:.0f} ms"
    )
    assert codes == [expected for *_, expected in attacks]
    # Before streaming parsing each of these held the event loop for seconds.
    assert worst < 1.0
    assert env.backend.record.watch_calls == 0


def _stalled_open(port: int, body: bytes) -> socket.socket:
    """A page that sends its Open and never reads: a tiny receive buffer, nothing consumed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    head = (
        f"POST /myko.v1.LiveBus/Open HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {BINARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


async def _health(http: aiohttp.ClientSession, base: str) -> dict[str, object]:
    async with http.get(f"{base}/healthz") as resp:
        body: dict[str, object] = await resp.json()
        return body


@pytest.mark.parametrize("gateway_env", [{"MYKO_GATEWAY_MAX_STREAM_UNSENT_BYTES": str(1024 * _MiB)}])
async def test_stalled_pages_pin_bounded_memory(env: Env) -> None:
    """Two pages with 256 subscriptions of a 1 MiB result each, that stop reading.

    The per-stream unsent-bytes cap is raised so the pages are admitted; what is
    measured is what they pin: one shared frame per result, not one per subscription.
    """
    base = env.gateway.base
    subs = 256
    body = _frame(
        live_pb2.LiveOpen(subscriptions=[_big_sub(f"b{i}") for i in range(subs)]).SerializeToString()
    )
    # Warm up every code path once with a page that reads, then measure from there.
    warm = live_pb2.LiveOpen(subscriptions=[_big_sub("w")]).SerializeToString()
    async with env.http.post(
        f"{base}/myko.v1.LiveBus/Open", data=_frame(warm), headers={"Content-Type": BINARY}
    ) as r:
        frames = FrameReader(r, text=False).frames()
        await anext(frames)
        await anext(frames)
    await eventually(lambda: env.backend.record.active_watches == 0, timeout_s=10)
    baseline = env.gateway.rss_bytes()
    pages = [await asyncio.to_thread(_stalled_open, env.gateway.port, body) for _ in range(2)]
    try:
        await eventually(lambda: env.backend.record.active_watches == 1, timeout_s=10)
        for _ in range(3):
            await asyncio.sleep(0.5)
            await env.backend.emitter.bump()
        await asyncio.sleep(1.5)
        pinned = env.gateway.rss_bytes() - baseline
        health = await _health(env.http, base)
    finally:
        for page in pages:
            page.close()
    print(
        f"two stalled pages x {subs} subscriptions of a {BIG_RESULT_BYTES // _MiB} MiB result: "
        f"gateway RSS grew {pinned / _MiB:.1f} MiB; /healthz {health}"
    )
    # One upstream Watch for all 512 subscriptions, one shared result frame.
    assert env.backend.record.watch_calls == 2  # the warm-up page's, then the stalled pages' shared one
    assert pinned < 64 * _MiB
