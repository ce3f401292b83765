"""LiveBus: many live views over one grpc-web stream, against a real grpc.aio backend."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from gateway_fakes import FakeBackend, start_fake_backend
from google.protobuf import any_pb2
from grpc_web_client import BINARY, FrameReader, call, frame, parse_trailers
from polling import eventually
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
def overrides() -> dict[str, Any]:
    """GatewaySettings fields a test changes (parametrize `overrides`)."""
    return {}


@pytest.fixture
async def env(tmp_path: Path, overrides: dict[str, Any]) -> AsyncIterator[Env]:
    backend = await start_fake_backend()
    settings = GatewaySettings(
        port=0,
        command_addr=backend.addr,
        query_addr=backend.addr,
        report_addr=backend.addr,
        ui_dist=str(tmp_path),
        live_heartbeat_ms=200,
        **overrides,
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


async def test_a_grouped_page_gets_one_frame_for_subscriptions_sharing_a_feed(env: Env) -> None:
    subs = [_with_id(f"s{i}", _query(queries_pb2.AllTargets())) for i in range(3)]
    subs.append(_with_id("r", _report()))
    grouped = await _open_raw(env, live_pb2.LiveOpen(subscriptions=subs, group_results=True))
    plain = await _open_raw(env, live_pb2.LiveOpen(subscriptions=subs))

    async def update(page: Page, seq: int) -> list[tuple[str, ...]]:
        named: list[tuple[str, ...]] = []
        while sum(len(n) for n in named) < 4:
            f = await page.next()
            assert (f.query.seq or f.report.seq) == seq
            named.append((f.sub_id, *f.more_sub_ids))
        return sorted(named)

    # Old clients (no flag) keep one frame per subscription; a grouped page gets the
    # three AllTargets subscriptions in one frame, as it arrived from upstream once.
    assert await update(plain, 1) == [("r",), ("s0",), ("s1",), ("s2",)]
    # Its subscriptions all joined before the feeds' first results came from upstream.
    assert await update(grouped, 1) == [("r",), ("s0", "s1", "s2")]
    await env.backend.emitter.bump()
    assert await update(grouped, 2) == [("r",), ("s0", "s1", "s2")]
    assert await update(plain, 2) == [("r",), ("s0",), ("s1",), ("s2",)]
    await grouped.close()
    await plain.close()


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
    subs = [_with_id(f"s{i}", _report()) for i in range(257)]
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


async def _open_raw(env: Env, request: live_pb2.LiveOpen, headers: dict[str, str] | None = None) -> Page:
    body = frame(request.SerializeToString())
    resp = await env.http.post(
        env.url("Open"), data=body, headers={"Content-Type": BINARY, **(headers or {})}
    )
    reader = FrameReader(resp, text=False).frames()
    _, first = await anext(reader)
    assert live_pb2.LiveFrame.FromString(first).WhichOneof("body") == "opened"
    return Page(resp, reader)


async def test_pages_behind_proxies_adding_headers_share_one_feed(env: Env) -> None:
    request = live_pb2.LiveOpen(subscriptions=[_with_id("a", _query(queries_pb2.AllTargets()))])
    pages = [
        await _open_raw(
            env,
            request,
            {"x-request-id": f"req-{i}", "x-forwarded-for": f"10.0.0.{i}", "x-b3-traceid": str(i)},
        )
        for i in range(5)
    ]
    for page in pages:
        assert (await page.next()).query.seq == 1
    assert env.backend.record.watch_calls == 1
    # Nothing the proxies added went upstream on the shared feed.
    assert {"x-request-id", "x-forwarded-for", "x-b3-traceid"}.isdisjoint(env.backend.record.metadata[-1])
    for page in pages:
        await page.close()


def _with_unknown_fields(msg: queries_pb2.AllTargets) -> live_pb2.LiveSubscription:
    # Field 99 (varint 7) inside the query payload and field 15 inside the QueryRequest envelope.
    packed = any_pb2.Any(
        type_url="type.googleapis.com/targets.v1.AllTargets", value=msg.SerializeToString() + b"\x98\x06\x07"
    )
    request = query_pb2.QueryRequest(query=packed).SerializeToString() + b"\x78\x01"
    return live_pb2.LiveSubscription(query=query_pb2.QueryRequest.FromString(request))


async def test_unknown_fields_do_not_split_a_feed(env: Env) -> None:
    plain = await Page.open(env, a=_query(queries_pb2.AllTargets()))
    await plain.next()
    odd = await Page.open(env, b=_with_unknown_fields(queries_pb2.AllTargets()))
    f = await odd.next()
    assert (f.sub_id, f.query.query_type) == ("b", "targets.v1.AllTargets")
    assert env.backend.record.watch_calls == 1
    # What went upstream is the canonical request: no unknown field anywhere.
    sent = query_pb2.QueryRequest.FromString(env.backend.record.watch_requests[0])
    assert sent.query.value == queries_pb2.AllTargets().SerializeToString()
    await plain.close()
    await odd.close()


async def test_sub_id_length_is_bounded(env: Env) -> None:
    sub = _with_id("s" * 129, _report())
    reply = await call(env.http, env.url("Open"), live_pb2.LiveOpen(subscriptions=[sub]).SerializeToString())
    assert reply.code == INVALID_ARGUMENT and "subscriptions[0].sub_id" in reply.message


async def test_upstream_error_text_in_frames_is_bounded(env: Env) -> None:
    nope = any_pb2.Any(type_url="type.googleapis.com/targets.v1.Nope" + "x" * 6000)
    page = await Page.open(env, bad=live_pb2.LiveSubscription(query=query_pb2.QueryRequest(query=nope)))
    f = await page.next()
    assert f.error.code == INVALID_ARGUMENT
    assert (
        f.error.message.startswith("query: unknown type targets.v1.Nopexxx") and len(f.error.message) < 1100
    )
    await page.close()


def _big(tag: str) -> live_pb2.LiveSubscription:
    # targets.v1.Big answers with a 1 MiB result; `tag` makes distinct feeds.
    big = any_pb2.Any(type_url="type.googleapis.com/targets.v1.Big", value=tag.encode())
    return live_pb2.LiveSubscription(query=query_pb2.QueryRequest(query=big))


@pytest.mark.parametrize("overrides", [{"max_streams_per_client": 2}])
async def test_streams_per_client_are_capped(env: Env) -> None:
    pages = [await Page.open(env, a=_report()) for _ in range(2)]
    reply = await call(env.http, env.url("Open"), live_pb2.LiveOpen().SerializeToString())
    assert reply.code == RESOURCE_EXHAUSTED and "2 open streams" in reply.message
    # A proxied Watch is a stream too.
    watch = await call(
        env.http,
        f"http://127.0.0.1:{env.gateway.port}/myko.v1.QueryBus/Watch",
        _query(queries_pb2.AllTargets()).query.SerializeToString(),
    )
    assert watch.code == RESOURCE_EXHAUSTED
    await pages[0].close()
    await eventually(lambda: env.gateway.admission.streams == 1)
    again = await Page.open(env, a=_report())
    await again.close()
    await pages[1].close()


@pytest.mark.parametrize("overrides", [{"max_streams": 1, "max_streams_per_client": 5}])
async def test_streams_per_process_are_capped(env: Env) -> None:
    page = await Page.open(env, a=_report())
    reply = await call(env.http, env.url("Open"), live_pb2.LiveOpen().SerializeToString())
    assert reply.code == RESOURCE_EXHAUSTED and "limit of 1 streams" in reply.message
    await page.close()


@pytest.mark.parametrize("overrides", [{"max_subscriptions_per_client": 5, "max_subscriptions": 8}])
async def test_subscriptions_per_client_and_process_are_capped(env: Env) -> None:
    page = await Page.open(env, **{f"q{i}": _query(queries_pb2.TargetById(id=str(i))) for i in range(4)})
    subs = [_with_id(f"r{i}", _report()) for i in range(2)]
    reply = await call(env.http, env.url("Open"), live_pb2.LiveOpen(subscriptions=subs).SerializeToString())
    assert reply.code == RESOURCE_EXHAUSTED and "5 subscriptions" in reply.message
    assert env.gateway.admission.subscriptions == 4  # the refused Open holds nothing
    await page.close()


@pytest.mark.parametrize("overrides", [{"max_feeds": 3}])
async def test_distinct_feeds_are_capped_shared_ones_are_free(env: Env) -> None:
    page = await Page.open(env, **{f"q{i}": _query(queries_pb2.TargetById(id=str(i))) for i in range(3)})
    # The same three requests again: shared, no new feed.
    same = await Page.open(env, **{f"q{i}": _query(queries_pb2.TargetById(id=str(i))) for i in range(3)})
    sub = _with_id("x", _query(queries_pb2.TargetById(id="new")))
    reply = await call(env.http, env.url("Open"), live_pb2.LiveOpen(subscriptions=[sub]).SerializeToString())
    assert reply.code == RESOURCE_EXHAUSTED and "3 upstream feeds" in reply.message
    await page.close()
    await same.close()


@pytest.mark.parametrize("overrides", [{"max_stream_unsent_bytes": 3 * 1024 * 1024}])
async def test_a_stream_over_its_unsent_bytes_ends_resource_exhausted(env: Env) -> None:
    # Four subscriptions of the same 1 MiB result: one upstream feed, but 4 MiB for this page to receive.
    page = await Page.open(env, **{f"b{i}": _big("same") for i in range(4)})
    await eventually(lambda: page.trailers != {}, timeout_s=5)
    assert page.trailers["grpc-status"] == str(RESOURCE_EXHAUSTED)
    assert "waiting to be sent" in unquote(page.trailers["grpc-message"])
    # Its subscriptions were released with it.
    await eventually(lambda: env.backend.record.active_watches == 0 and env.gateway.admission.streams == 0)
    await page.close()


@pytest.mark.parametrize("overrides", [{"max_buffered_bytes": 2 * 1024 * 1024}])
async def test_new_streams_wait_while_the_gateway_holds_its_byte_budget(env: Env) -> None:
    pages = [await Page.open(env, **{f"b{i}": _big(f"feed-{i}")}) for i in range(3)]
    for page in pages:
        await page.next()
    assert env.gateway.admission.gauge.held > 2 * 1024 * 1024  # three distinct 1 MiB results held
    reply = await call(
        env.http,
        env.url("Open"),
        live_pb2.LiveOpen(subscriptions=[_with_id("r", _report())]).SerializeToString(),
    )
    assert reply.code == RESOURCE_EXHAUSTED and "retry later" in reply.message
    for page in pages:
        await page.close()
    # The results are released with the last subscriber of each feed.
    await eventually(lambda: env.gateway.admission.gauge.held < 1024 * 1024)
    ok = await Page.open(env, r=_report())
    await ok.close()


@pytest.mark.parametrize("overrides", [{"stall_timeout_ms": 500}])
async def test_a_page_that_stops_reading_is_dropped_and_its_feeds_released(env: Env) -> None:
    body = frame(live_pb2.LiveOpen(subscriptions=[_with_id("b", _big("stall"))]).SerializeToString())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", env.gateway.port))
    head = f"POST /myko.v1.LiveBus/Open HTTP/1.1\r\nHost: x\r\nContent-Type: {BINARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    await loop.sock_sendall(sock, head.encode() + body)
    try:
        await eventually(lambda: env.backend.record.active_watches == 1, timeout_s=5)
        # Never read: once the kernel's buffers (up to 4 MiB here) are full, a 1 MiB frame
        # cannot be written, and after the stall timeout the gateway lets go.
        for _ in range(8):
            await env.backend.emitter.bump()
            await asyncio.sleep(0.05)
        await eventually(
            lambda: env.backend.record.active_watches == 0 and env.gateway.hub.session_count == 0,
            timeout_s=10,
        )
        assert env.gateway.admission.streams == 0
    finally:
        sock.close()
