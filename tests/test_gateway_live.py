"""LiveBus: many live views over one grpc-web stream, against a real grpc.aio backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from gateway_fakes import FakeBackend, eventually, start_fake_backend
from google.protobuf import any_pb2
from grpc_web_client import BINARY, FrameReader, call, frame, parse_trailers

from gateway.server import Gateway
from gen.app.v1 import queries_pb2, reports_pb2
from gen.myko.v1 import live_pb2, query_pb2, report_pb2
from myko.settings import GatewaySettings

INVALID_ARGUMENT, NOT_FOUND = 3, 5


@dataclass
class Env:
    backend: FakeBackend
    gateway: Gateway
    http: aiohttp.ClientSession

    def url(self, method: str) -> str:
        return f"http://127.0.0.1:{self.gateway.port}/myko.v1.LiveBus/{method}"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    backend = await start_fake_backend()
    settings = GatewaySettings(
        port=0,
        command_addr=backend.addr,
        query_addr=backend.addr,
        report_addr=backend.addr,
        ui_dist=str(tmp_path),
        live_heartbeat_ms=200,
    )
    gateway = Gateway(settings)
    await gateway.start()
    # Six connections per host, as a browser allows over HTTP/1.1.
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit_per_host=6))
    try:
        yield Env(backend, gateway, http)
    finally:
        await http.close()
        await gateway.stop()
        await backend.server.stop(grace=None)


class Page:
    """One browser page: an open LiveBus session read in the background."""

    def __init__(self, env: Env, resp: aiohttp.ClientResponse, session_id: str) -> None:
        self.env = env
        self.resp = resp
        self.session_id = session_id
        self.frames: asyncio.Queue[live_pb2.LiveFrame] = asyncio.Queue()
        self.trailers: dict[str, str] = {}
        self._reader = FrameReader(resp, text=False).frames()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, env: Env) -> Page:
        body = frame(live_pb2.LiveOpen().SerializeToString())
        resp = await env.http.post(env.url("Open"), data=body, headers={"Content-Type": BINARY})
        reader = FrameReader(resp, text=False).frames()
        _, first = await anext(reader)
        opened = live_pb2.LiveFrame.FromString(first)
        assert opened.WhichOneof("body") == "opened"
        assert opened.opened.heartbeat_interval_ms == 200
        page = cls(env, resp, opened.opened.session_id)
        page._reader = reader
        return page

    async def _read(self) -> None:
        async for flag, payload in self._reader:
            if flag & 0x80:
                self.trailers = parse_trailers(payload)
            else:
                self.frames.put_nowait(live_pb2.LiveFrame.FromString(payload))

    async def next(self, *, skip_heartbeats: bool = True) -> live_pb2.LiveFrame:
        while True:
            f = await asyncio.wait_for(self.frames.get(), 3.0)
            if not (skip_heartbeats and f.WhichOneof("body") == "heartbeat"):
                return f

    async def subscribe(self, sub_id: str, request: live_pb2.LiveSubscribe) -> int:
        request.session_id, request.sub_id = self.session_id, sub_id
        reply = await call(self.env.http, self.env.url("Subscribe"), request.SerializeToString())
        return reply.code

    async def unsubscribe(self, sub_id: str) -> int:
        req = live_pb2.LiveUnsubscribe(session_id=self.session_id, sub_id=sub_id)
        return (await call(self.env.http, self.env.url("Unsubscribe"), req.SerializeToString())).code

    async def close(self) -> None:
        self._task.cancel()
        self.resp.close()


def _query(msg: queries_pb2.AllTargets | queries_pb2.TargetById) -> live_pb2.LiveSubscribe:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return live_pb2.LiveSubscribe(query=query_pb2.QueryRequest(query=packed))


def _report() -> live_pb2.LiveSubscribe:
    packed = any_pb2.Any()
    packed.Pack(reports_pb2.TargetCountsByStatus())
    return live_pb2.LiveSubscribe(report=report_pb2.ReportRequest(report=packed))


async def test_subscription_frames_carry_the_upstream_result(env: Env) -> None:
    page = await Page.open(env)
    assert await page.subscribe("a", _query(queries_pb2.AllTargets())) == 0
    f = await page.next()
    assert f.sub_id == "a" and f.WhichOneof("body") == "query"
    assert (f.query.query_type, f.query.seq) == ("app.v1.AllTargets", 1)
    await env.backend.emitter.bump()
    f = await page.next()
    assert (f.sub_id, f.query.seq) == ("a", 2)
    assert await page.subscribe("r", _report()) == 0
    f = await page.next()
    assert f.sub_id == "r" and f.report.report_type == "app.v1.TargetCountsByStatus"
    await page.close()


async def test_twenty_five_live_views_over_one_connection_of_six(env: Env) -> None:
    page = await Page.open(env)
    subs = {f"q{i}": _query(queries_pb2.TargetById(id=f"t{i}")) for i in range(20)}
    subs.update({f"r{i}": _report() for i in range(5)})
    codes = await asyncio.gather(*(page.subscribe(k, v) for k, v in subs.items()))
    assert codes == [0] * 25
    seen: set[str] = set()
    while seen != set(subs):
        seen.add((await page.next()).sub_id)
    # 20 distinct queries plus one shared report stream upstream.
    assert env.gateway.hub.feed_count == 21
    await env.backend.emitter.bump()
    updated: set[str] = set()
    while updated != set(subs):
        updated.add((await page.next()).sub_id)
    await page.close()


async def test_identical_subscriptions_share_one_upstream_watch(env: Env) -> None:
    a, b = await Page.open(env), await Page.open(env)
    await a.subscribe("x", _query(queries_pb2.AllTargets()))
    await a.next()
    await b.subscribe("y", _query(queries_pb2.AllTargets()))
    f = await b.next()
    assert (f.sub_id, f.query.query_type) == ("y", "app.v1.AllTargets")
    assert env.backend.record.watch_calls == 1
    await env.backend.emitter.bump()
    assert (await a.next()).query.seq == (await b.next()).query.seq == 2
    # The upstream stream lives while anyone watches, and stops with the last one.
    assert await a.unsubscribe("x") == 0
    assert env.backend.record.active_watches == 1
    assert await b.unsubscribe("y") == 0
    await eventually(lambda: env.backend.record.active_watches == 0)
    await a.close()
    await b.close()


async def test_closing_the_page_stops_its_upstream_watches(env: Env) -> None:
    page = await Page.open(env)
    await page.subscribe("a", _query(queries_pb2.TargetById(id="1")))
    await page.subscribe("b", _query(queries_pb2.TargetById(id="2")))
    await page.next()
    await page.next()
    assert env.backend.record.active_watches == 2
    await page.close()
    await eventually(lambda: env.backend.record.active_watches == 0 and env.gateway.hub.session_count == 0)


async def test_upstream_error_ends_only_that_subscription(env: Env) -> None:
    page = await Page.open(env)
    await page.subscribe("good", _query(queries_pb2.AllTargets()))
    await page.next()
    bad = live_pb2.LiveSubscribe(
        query=query_pb2.QueryRequest(query=any_pb2.Any(type_url="type.googleapis.com/app.v1.Nope"))
    )
    assert await page.subscribe("bad", bad) == 0
    f = await page.next()
    assert f.sub_id == "bad" and f.error.code == INVALID_ARGUMENT and "app.v1.Nope" in f.error.message
    await env.backend.emitter.bump()
    f = await page.next()
    assert (f.sub_id, f.query.seq) == ("good", 2)
    await page.close()


async def test_unknown_session_and_bad_requests(env: Env) -> None:
    page = await Page.open(env)
    gone = live_pb2.LiveSubscribe(session_id="nope", sub_id="a", query=_query(queries_pb2.AllTargets()).query)
    assert (await call(env.http, env.url("Subscribe"), gone.SerializeToString())).code == NOT_FOUND
    assert await page.subscribe("a", live_pb2.LiveSubscribe()) == INVALID_ARGUMENT
    assert await page.subscribe("", _query(queries_pb2.AllTargets())) == INVALID_ARGUMENT
    reply = await call(env.http, env.url("Subscribe"), b"\xff\xff")
    assert reply.code == INVALID_ARGUMENT
    await page.close()


async def test_idle_session_gets_heartbeats(env: Env) -> None:
    page = await Page.open(env)
    f = await page.next(skip_heartbeats=False)
    assert f.WhichOneof("body") == "heartbeat"
    await page.close()


async def test_gateway_shutdown_ends_sessions_with_unavailable(env: Env) -> None:
    page = await Page.open(env)
    await page.subscribe("a", _query(queries_pb2.AllTargets()))
    await page.next()
    await env.gateway.hub.aclose()
    await eventually(lambda: page.trailers != {})
    assert page.trailers["grpc-status"] == "14"
    await page.close()
