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
from targets.v1 import queries_pb2, reports_pb2

from myko.gateway.server import Gateway
from myko.settings import GatewaySettings
from myko.v1 import live_pb2, query_pb2, report_pb2

INVALID_ARGUMENT, RESOURCE_EXHAUSTED = 3, 8


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
    """One browser page: an open LiveBus stream read in the background."""

    def __init__(self, resp: aiohttp.ClientResponse, reader: AsyncIterator[tuple[int, bytes]]) -> None:
        self.resp = resp
        self.frames: asyncio.Queue[live_pb2.LiveFrame] = asyncio.Queue()
        self.trailers: dict[str, str] = {}
        self._reader = reader
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, env: Env, **subs: live_pb2.LiveSubscription) -> Page:
        request = live_pb2.LiveOpen(subscriptions=[_with_id(k, v) for k, v in subs.items()])
        body = frame(request.SerializeToString())
        resp = await env.http.post(env.url("Open"), data=body, headers={"Content-Type": BINARY})
        reader = FrameReader(resp, text=False).frames()
        _, first = await anext(reader)
        opened = live_pb2.LiveFrame.FromString(first)
        assert opened.WhichOneof("body") == "opened"
        assert opened.opened.heartbeat_interval_ms == 200
        return cls(resp, reader)

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

    async def close(self) -> None:
        self._task.cancel()
        self.resp.close()


def _with_id(sub_id: str, sub: live_pb2.LiveSubscription) -> live_pb2.LiveSubscription:
    out = live_pb2.LiveSubscription()
    out.CopyFrom(sub)
    out.sub_id = sub_id
    return out


def _query(msg: queries_pb2.AllTargets | queries_pb2.TargetById) -> live_pb2.LiveSubscription:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return live_pb2.LiveSubscription(query=query_pb2.QueryRequest(query=packed))


def _report() -> live_pb2.LiveSubscription:
    packed = any_pb2.Any()
    packed.Pack(reports_pb2.TargetCountsByStatus())
    return live_pb2.LiveSubscription(report=report_pb2.ReportRequest(report=packed))


async def _open_status(env: Env, request: bytes) -> int:
    return (await call(env.http, env.url("Open"), request)).code


async def test_subscription_frames_carry_the_upstream_result(env: Env) -> None:
    page = await Page.open(env, a=_query(queries_pb2.AllTargets()), r=_report())
    got: dict[str, live_pb2.LiveFrame] = {}
    while len(got) < 2:
        f = await page.next()
        got[f.sub_id] = f
    assert got["a"].WhichOneof("body") == "query"
    assert (got["a"].query.query_type, got["a"].query.seq) == ("targets.v1.AllTargets", 1)
    assert got["r"].report.report_type == "targets.v1.TargetCountsByStatus"
    await env.backend.emitter.bump()
    seqs: dict[str, int] = {}
    while len(seqs) < 2:
        f = await page.next()
        seqs[f.sub_id] = f.query.seq if f.sub_id == "a" else f.report.seq
    assert seqs == {"a": 2, "r": 2}
    await page.close()


async def test_twenty_five_live_views_over_one_connection_of_six(env: Env) -> None:
    subs = {f"q{i}": _query(queries_pb2.TargetById(id=f"t{i}")) for i in range(20)}
    subs.update({f"r{i}": _report() for i in range(5)})
    page = await Page.open(env, **subs)
    seen: set[str] = set()
    while seen != set(subs):
        seen.add((await page.next()).sub_id)
    # 20 distinct queries plus one shared report stream upstream.
    assert env.gateway.hub.feed_count == 21
    await env.backend.emitter.bump()
    updated: set[str] = set()
    while updated != set(subs):
        updated.add((await page.next()).sub_id)
    # The other five connections stay free: ordinary calls still go through.
    codes = await asyncio.gather(*(_open_status(env, b"\xff") for _ in range(10)))
    assert codes == [INVALID_ARGUMENT] * 10
    await page.close()


async def test_identical_subscriptions_share_one_upstream_watch(env: Env) -> None:
    a = await Page.open(env, x=_query(queries_pb2.AllTargets()))
    await a.next()
    b = await Page.open(env, y=_query(queries_pb2.AllTargets()))
    f = await b.next()
    assert (f.sub_id, f.query.query_type) == ("y", "targets.v1.AllTargets")
    assert env.backend.record.watch_calls == 1
    await env.backend.emitter.bump()
    assert (await a.next()).query.seq == (await b.next()).query.seq == 2
    # The upstream stream lives while anyone watches, and stops with the last one.
    await a.close()
    await eventually(lambda: env.gateway.hub.session_count == 1)
    assert env.backend.record.active_watches == 1
    await b.close()
    await eventually(lambda: env.backend.record.active_watches == 0)


async def test_reopening_with_a_changed_set_keeps_shared_feeds(env: Env) -> None:
    # What a page does when one view's parameters change: open the new set, then close the old.
    old = await Page.open(env, a=_query(queries_pb2.AllTargets()), b=_query(queries_pb2.TargetById(id="1")))
    await old.next()
    await old.next()
    new = await Page.open(env, a=_query(queries_pb2.AllTargets()), c=_query(queries_pb2.TargetById(id="2")))
    got = {(await new.next()).sub_id, (await new.next()).sub_id}
    assert got == {"a", "c"}
    await old.close()
    await eventually(lambda: env.backend.record.active_watches == 2)
    # AllTargets was never re-evaluated upstream: 3 Watch calls, not 4.
    assert env.backend.record.watch_calls == 3
    await new.close()


async def test_closing_the_page_stops_its_upstream_watches(env: Env) -> None:
    page = await Page.open(
        env, a=_query(queries_pb2.TargetById(id="1")), b=_query(queries_pb2.TargetById(id="2"))
    )
    await page.next()
    await page.next()
    assert env.backend.record.active_watches == 2
    await page.close()
    await eventually(lambda: env.backend.record.active_watches == 0 and env.gateway.hub.session_count == 0)


async def test_upstream_error_ends_only_that_subscription(env: Env) -> None:
    bad = live_pb2.LiveSubscription(
        query=query_pb2.QueryRequest(query=any_pb2.Any(type_url="type.googleapis.com/targets.v1.Nope"))
    )
    page = await Page.open(env, good=_query(queries_pb2.AllTargets()), bad=bad)
    frames: dict[str, live_pb2.LiveFrame] = {}
    while len(frames) < 2:
        f = await page.next()
        frames[f.sub_id] = f
    assert frames["bad"].error.code == INVALID_ARGUMENT and "targets.v1.Nope" in frames["bad"].error.message
    await env.backend.emitter.bump()
    f = await page.next()
    assert (f.sub_id, f.query.seq) == ("good", 2)
    await page.close()


@pytest.mark.parametrize(
    ("subs", "message"),
    [
        ([live_pb2.LiveSubscription(sub_id="a")], "subscriptions[0].request"),
        ([live_pb2.LiveSubscription(query=query_pb2.QueryRequest())], "subscriptions[0].sub_id"),
        (
            [_with_id("a", _query(queries_pb2.AllTargets())), _with_id("a", _report())],
            "subscriptions[1].sub_id",
        ),
    ],
)
async def test_bad_open_requests_are_invalid_argument(
    env: Env, subs: list[live_pb2.LiveSubscription], message: str
) -> None:
    reply = await call(env.http, env.url("Open"), live_pb2.LiveOpen(subscriptions=subs).SerializeToString())
    assert reply.code == INVALID_ARGUMENT
    assert message in reply.message
    assert env.backend.record.watch_calls == 0


async def test_too_many_subscriptions_are_refused(env: Env) -> None:
    subs = [_with_id(f"s{i}", _report()) for i in range(env.gateway.hub.max_subs + 1)]
    reply = await call(env.http, env.url("Open"), live_pb2.LiveOpen(subscriptions=subs).SerializeToString())
    assert reply.code == RESOURCE_EXHAUSTED


async def test_idle_stream_gets_heartbeats(env: Env) -> None:
    page = await Page.open(env)
    f = await page.next(skip_heartbeats=False)
    assert f.WhichOneof("body") == "heartbeat"
    await page.close()


async def test_gateway_shutdown_ends_streams_with_unavailable(env: Env) -> None:
    page = await Page.open(env, a=_query(queries_pb2.AllTargets()))
    await page.next()
    await env.gateway.hub.aclose()
    await eventually(lambda: page.trailers != {})
    assert page.trailers["grpc-status"] == "14"
    await page.close()
