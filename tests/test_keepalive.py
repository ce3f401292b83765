"""Idle live streams survive keepalive pings: servers and clients share one policy.

Issue 12, finding 11: servers ignored their ping allowance (a misspelt gRPC
option), so after three pings they sent GOAWAY "too_many_pings" and every idle
feed ended UNAVAILABLE. Here every service, the repo feed and the gateway ping
each other every second, and streams idle for many periods must see nothing
of it. The last test is the control: a client pinging faster than its server
accepts is cut off, so pings do flow and a GOAWAY would be seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from conftest import InProcessStack
from google.protobuf import any_pb2
from grpc_web_client import BINARY, FrameReader, frame
from myko_client import Clients, items, visible
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

from myko.app import App
from myko.gateway.server import Gateway
from myko.keepalive import KeepalivePolicy
from myko.server import GrpcServer
from myko.settings import GatewaySettings, QuerySettings
from myko.v1 import live_pb2, query_pb2, report_pb2

pytestmark = pytest.mark.kafka

PERIOD_MS = 1000
FAST = KeepalivePolicy(time_ms=PERIOD_MS, timeout_ms=2000)
IDLE_S = 8 * PERIOD_MS / 1000  # eight ping periods, each one a strike under the old server options


@pytest.fixture
async def fast_stack(myko_env: dict[str, str], example_app: App) -> AsyncIterator[InProcessStack]:
    env = {
        **myko_env,
        "MYKO_KEEPALIVE_TIME_MS": str(FAST.time_ms),
        "MYKO_KEEPALIVE_TIMEOUT_MS": str(FAST.timeout_ms),
    }
    s = await InProcessStack.start(env, example_app)
    try:
        yield s
    finally:
        await s.stop()


class Tail:
    """Reads a stream in the background; `idle()` fails if it ends or emits meanwhile."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.results: asyncio.Queue[Any] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.results.put_nowait(await self.stream.read())

    async def next(self, predicate: Any = lambda r: True) -> Any:
        while True:
            get = asyncio.ensure_future(self.results.get())
            done, _ = await asyncio.wait({get, self.task}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                raise AssertionError(f"stream ended: {self.task.exception()!r}")
            if predicate(result := get.result()):
                return result

    async def idle(self, seconds: float) -> None:
        """Wait `seconds`: the stream must not end (what it sent meanwhile stays queued)."""
        await asyncio.wait({self.task}, timeout=seconds)
        assert not self.task.done(), f"idle stream ended: {self.task.exception()!r}"

    def close(self) -> None:
        self.stream.cancel()
        self.task.cancel()
        self.task.add_done_callback(lambda t: t.cancelled() or t.exception())


class _LivePage:
    """A LiveBus response as a stream of LiveFrames (read() raises when it ends)."""

    def __init__(self, frames: AsyncIterator[tuple[int, bytes]]) -> None:
        self._frames = frames

    async def read(self) -> live_pb2.LiveFrame:
        flag, payload = await anext(self._frames)
        if flag & 0x80:
            raise AssertionError(f"the page's stream ended: {payload!r}")
        return live_pb2.LiveFrame.FromString(payload)

    def cancel(self) -> None:
        pass


def _drain(queue: asyncio.Queue[Any]) -> list[Any]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


async def test_idle_watches_outlive_many_keepalive_periods(fast_stack: InProcessStack) -> None:
    def channel(port: int) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=FAST.client_options())

    clients = Clients(
        command=channel(fast_stack.command.grpc.port),
        query=channel(fast_stack.query.grpc.port),
        report=channel(fast_stack.report.grpc.port),
    )
    targets = Tail(clients.watch(queries_pb2.AllTargets()))
    counts = Tail(clients.watch_report(reports_pb2.TargetCountsByStatus()))
    try:
        async with asyncio.timeout(10):
            assert items(await targets.next(), entities_pb2.Target) == []
            await counts.next()
        await asyncio.gather(targets.idle(IDLE_S), counts.idle(IDLE_S))
        assert targets.results.empty() and counts.results.empty(), "emitted although nothing changed"
        # Still the same streams, still live: a change arrives on both.
        done = await clients.execute(commands_pb2.SetTarget(name="after the quiet"))
        async with asyncio.timeout(10):
            got = await targets.next(lambda r: visible(done, r.watermark))
            assert [t.name for t in items(got, entities_pb2.Target)] == ["after the quiet"]
            await counts.next(lambda r: visible(done, r.watermark))
        # The services' own feeds from repo_svc were idle as long and never reconnected.
        assert fast_stack.query.feed.snapshots == fast_stack.report.feed.snapshots == 1
    finally:
        targets.close()
        counts.close()
        await clients.close()


async def test_gateway_feeds_outlive_many_keepalive_periods(
    fast_stack: InProcessStack, tmp_path: Path
) -> None:
    gateway = Gateway(
        GatewaySettings(
            port=0,
            command_addr=f"127.0.0.1:{fast_stack.command.grpc.port}",
            query_addr=f"127.0.0.1:{fast_stack.query.grpc.port}",
            report_addr=f"127.0.0.1:{fast_stack.report.grpc.port}",
            ui_dist=str(tmp_path),
            keepalive=FAST,
        )
    )
    await gateway.start()
    http = aiohttp.ClientSession()
    try:
        q = any_pb2.Any()
        q.Pack(queries_pb2.AllTargets())
        r = any_pb2.Any()
        r.Pack(reports_pb2.TargetCountsByStatus())
        opening = live_pb2.LiveOpen(
            subscriptions=[
                live_pb2.LiveSubscription(sub_id="q", query=query_pb2.QueryRequest(query=q)),
                live_pb2.LiveSubscription(sub_id="r", report=report_pb2.ReportRequest(report=r)),
            ]
        )
        resp = await http.post(
            f"http://127.0.0.1:{gateway.port}/myko.v1.LiveBus/Open",
            data=frame(opening.SerializeToString()),
            headers={"Content-Type": BINARY},
        )
        page = Tail(_LivePage(FrameReader(resp, text=False).frames()))

        def result(f: live_pb2.LiveFrame) -> bool:
            assert f.WhichOneof("body") != "error", f"{f.sub_id} ended: {f.error}"
            return f.WhichOneof("body") in ("query", "report")

        async with asyncio.timeout(10):
            first = {(await page.next(result)).sub_id, (await page.next(result)).sub_id}
        assert first == {"q", "r"}
        # Idle: nothing but heartbeats, no error frame, no end, for many ping periods.
        await page.idle(IDLE_S)
        assert not [f for f in _drain(page.results) if f.WhichOneof("body") != "heartbeat"]
        done = await fast_stack.clients.execute(commands_pb2.SetTarget(name="after the quiet"))
        async with asyncio.timeout(10):
            f = await page.next(lambda f: result(f) and f.sub_id == "q" and visible(done, f.query.watermark))
        assert [t.name for t in items(f.query, entities_pb2.Target)] == ["after the quiet"]
        # The gateway's upstream feeds were never re-opened.
        assert gateway.hub.feed_count == 2
        page.close()
        resp.close()
    finally:
        await http.close()
        await gateway.stop()


async def test_pings_faster_than_the_server_accepts_end_in_goaway() -> None:
    """Control: with mismatched periods the same kind of stream is cut off by GOAWAY."""

    async def quiet(request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield b"first"
        await asyncio.sleep(3600)

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.unary_stream_rpc_method_handler(quiet)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("test.Quiet", {"Watch": handler}),)
        )

    slow = QuerySettings(service="query", app_module="targets", keepalive=KeepalivePolicy(time_ms=60_000))
    server = GrpcServer(slow, service_names=[], register=[register])
    await server.start()
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}", options=KeepalivePolicy(time_ms=300, timeout_ms=2000).client_options()
    )
    try:
        call = channel.unary_stream("/test.Quiet/Watch", None, None)(b"")
        assert await call.read() == b"first"
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(15):
                await call.read()
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "ping" in (ended.value.details() or "").lower()
    finally:
        await channel.close(None)
        await server.stop(0)
