"""The grpc-web gateway against a real grpc.aio backend, spoken to as a browser would."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from gateway_fakes import FakeBackend, eventually, start_fake_backend
from google.protobuf import any_pb2
from grpc_web_client import BINARY, FrameReader, call, frame
from targets.v1 import commands_pb2, queries_pb2

from myko.gateway.server import Gateway
from myko.settings import GatewaySettings
from myko.v1 import command_pb2, query_pb2, repo_pb2

OK, INVALID_ARGUMENT, DEADLINE_EXCEEDED, UNIMPLEMENTED = 0, 3, 4, 12


@dataclass
class Env:
    backend: FakeBackend
    gateway: Gateway
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>myko</title>")
    (tmp_path / "assets" / "app-1234.js").write_text("console.log('hi')")
    backend = await start_fake_backend()
    settings = GatewaySettings(
        host="127.0.0.1",
        port=0,
        command_addr=backend.addr,
        query_addr=backend.addr,
        report_addr=backend.addr,
        cors_origins=("http://localhost:5173",),
        ui_dist=str(tmp_path),
        live_heartbeat_ms=200,
    )
    gateway = Gateway(settings)
    await gateway.start()
    http = aiohttp.ClientSession()
    try:
        yield Env(backend, gateway, http)
    finally:
        await http.close()
        await gateway.stop()
        await backend.server.stop(grace=None)


def _query(msg: queries_pb2.AllTargets | queries_pb2.TargetById) -> bytes:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return query_pb2.QueryRequest(query=packed).SerializeToString()


def _command(tx: str) -> bytes:
    packed = any_pb2.Any()
    packed.Pack(commands_pb2.DeleteTarget(id="t1"))
    return command_pb2.CommandRequest(tx=tx, command=packed).SerializeToString()


async def test_unary_command_round_trip_with_metadata_both_ways(env: Env) -> None:
    reply = await call(
        env.http,
        f"{env.base}/myko.v1.CommandBus/Execute",
        _command("tx-1"),
        headers={"x-request-id": "r-42", "x-token-bin": base64.b64encode(b"\x01\x02").decode()},
    )
    assert reply.http_status == 200
    assert reply.headers["Content-Type"] == BINARY
    assert reply.code == OK
    result = command_pb2.CommandResult.FromString(reply.messages[0])
    assert (result.tx, result.command_type) == ("tx-1", "targets.v1.DeleteTarget")
    seen = env.backend.record.metadata[-1]
    assert seen["x-request-id"] == "r-42"
    assert seen["x-token-bin"] == b"\x01\x02"
    assert "origin" not in seen and "content-type" not in seen
    assert reply.headers["x-served-by"] == "fake-command"
    assert reply.trailers["x-tx-echo"] == "tx-1"
    assert base64.b64decode(reply.trailers["x-trace-bin"]) == b"\x00\x01\xff"


async def test_text_mode_round_trip(env: Env) -> None:
    reply = await call(
        env.http, f"{env.base}/myko.v1.QueryBus/Get", _query(queries_pb2.AllTargets()), text=True
    )
    assert reply.headers["Content-Type"] == "application/grpc-web-text+proto"
    assert reply.code == OK
    assert query_pb2.QueryResult.FromString(reply.messages[0]).query_type == "targets.v1.AllTargets"


async def test_upstream_error_status_reaches_the_browser_in_trailers(env: Env) -> None:
    reply = await call(env.http, f"{env.base}/myko.v1.CommandBus/Execute", _command(""))
    assert reply.http_status == 200
    assert reply.messages == []
    assert reply.code == INVALID_ARGUMENT
    assert reply.message == "tx: must be a UUID (ünïcode: ok)"


@pytest.mark.parametrize(
    "path",
    ["/myko.v1.RepoService/Get", "/myko.v1.RepoService/Subscribe", "/grpc.health.v1.Health/Check", "/x/y"],
)
async def test_internal_and_unknown_methods_are_unimplemented(env: Env, path: str) -> None:
    reply = await call(
        env.http, env.base + path, repo_pb2.RepoGetRequest(type="targets.v1.Target").SerializeToString()
    )
    assert reply.code == UNIMPLEMENTED
    assert env.backend.record.repo_calls == 0


async def test_deadline_is_passed_through(env: Env) -> None:
    slow = any_pb2.Any(type_url="type.googleapis.com/targets.v1.Slow")
    request = query_pb2.QueryRequest(query=slow).SerializeToString()
    began = asyncio.get_running_loop().time()
    reply = await call(
        env.http, f"{env.base}/myko.v1.QueryBus/Get", request, headers={"grpc-timeout": "300m"}
    )
    assert reply.code == DEADLINE_EXCEEDED
    assert asyncio.get_running_loop().time() - began < 2.0
    remaining = env.backend.record.time_remaining[-1]
    assert remaining is not None and remaining < 0.35


async def test_bad_timeout_and_bad_framing_are_invalid_argument(env: Env) -> None:
    url = f"{env.base}/myko.v1.QueryBus/Get"
    reply = await call(env.http, url, _query(queries_pb2.AllTargets()), headers={"grpc-timeout": "soon"})
    assert reply.code == INVALID_ARGUMENT
    async with env.http.post(url, data=b"\x00\x00\x00", headers={"Content-Type": BINARY}) as resp:
        body = await resp.read()
    assert b"grpc-status: 3" in body


async def test_non_grpc_web_post_is_rejected(env: Env) -> None:
    async with env.http.post(f"{env.base}/myko.v1.QueryBus/Get", data=b"{}", json=None) as resp:
        assert resp.status == 415


async def test_server_stream_delivers_each_emission_as_it_happens(env: Env) -> None:
    body = frame(_query(queries_pb2.AllTargets()))
    headers = {"Content-Type": BINARY, "X-Grpc-Web": "1"}
    async with env.http.post(f"{env.base}/myko.v1.QueryBus/Watch", data=body, headers=headers) as resp:
        frames = FrameReader(resp, text=False).frames()
        _, first = await anext(frames)
        assert query_pb2.QueryResult.FromString(first).seq == 1
        await env.backend.emitter.bump()
        _, second = await asyncio.wait_for(anext(frames), 2.0)
        assert query_pb2.QueryResult.FromString(second).seq == 2


async def test_browser_going_away_cancels_the_upstream_stream(env: Env) -> None:
    record = env.backend.record
    body = frame(_query(queries_pb2.AllTargets()))
    async with aiohttp.ClientSession() as browser:
        resp = await browser.post(
            f"{env.base}/myko.v1.QueryBus/Watch", data=body, headers={"Content-Type": BINARY}
        )
        await anext(FrameReader(resp, text=False).frames())
        assert record.active_watches == 1
        resp.close()  # drops the connection, as a closed tab does
    await eventually(lambda: record.active_watches == 0)
    assert record.cancelled_watches == 1


async def test_stream_error_after_start_ends_with_status_trailer(env: Env) -> None:
    nope = any_pb2.Any(type_url="type.googleapis.com/targets.v1.Nope")
    reply = await call(
        env.http, f"{env.base}/myko.v1.QueryBus/Watch", query_pb2.QueryRequest(query=nope).SerializeToString()
    )
    assert reply.code == INVALID_ARGUMENT
    assert "targets.v1.Nope" in reply.message


async def test_cors_preflight_and_exposed_headers(env: Env) -> None:
    url = f"{env.base}/myko.v1.CommandBus/Execute"
    preflight = {
        "Origin": "http://localhost:5173",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-grpc-web,x-user-agent,grpc-timeout",
    }
    async with env.http.options(url, headers=preflight) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
        assert "grpc-timeout" in resp.headers["Access-Control-Allow-Headers"]
    async with env.http.options(url, headers={**preflight, "Origin": "http://evil.example"}) as resp:
        assert resp.status == 403
        assert "Access-Control-Allow-Origin" not in resp.headers
    reply = await call(env.http, url, _command("tx-2"), headers={"Origin": "http://localhost:5173"})
    exposed = reply.headers["Access-Control-Expose-Headers"]
    assert "grpc-status" in exposed and "grpc-message" in exposed and "x-served-by" in exposed


async def test_health_endpoint(env: Env) -> None:
    async with env.http.get(f"{env.base}/healthz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "SERVING"
    assert set(body["upstreams"]) == {"command", "query", "report"}


async def test_serves_ui_with_spa_fallback(env: Env) -> None:
    async with env.http.get(f"{env.base}/") as resp:
        assert resp.status == 200 and "myko" in await resp.text()
    async with env.http.get(f"{env.base}/zones/z-1") as resp:
        assert resp.status == 200 and "myko" in await resp.text()
        assert resp.headers["Cache-Control"] == "no-cache"
    async with env.http.get(f"{env.base}/assets/app-1234.js") as resp:
        assert resp.status == 200 and "immutable" in resp.headers["Cache-Control"]
    async with env.http.get(f"{env.base}/assets/missing.js") as resp:
        assert resp.status == 404
    async with env.http.get(f"{env.base}/../../etc/passwd") as resp:
        assert resp.status in (200, 404) and "root:" not in await resp.text()


async def test_text_mode_server_stream(env: Env) -> None:
    body = base64.b64encode(frame(_query(queries_pb2.AllTargets())))
    headers = {"Content-Type": "application/grpc-web-text", "X-Grpc-Web": "1"}
    async with env.http.post(f"{env.base}/myko.v1.QueryBus/Watch", data=body, headers=headers) as resp:
        assert resp.headers["Content-Type"] == "application/grpc-web-text+proto"
        frames = FrameReader(resp, text=True).frames()
        _, first = await anext(frames)
        assert query_pb2.QueryResult.FromString(first).seq == 1
        await env.backend.emitter.bump()
        _, second = await asyncio.wait_for(anext(frames), 2.0)
        assert query_pb2.QueryResult.FromString(second).seq == 2
