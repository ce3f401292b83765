"""The grpc-web gateway against a real grpc.aio backend, spoken to as a browser would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import aiohttp
import pytest
from gateway_fakes import FakeBackend, start_fake_backend
from google.protobuf import any_pb2
from grpc_web_client import BINARY, TEXT, FrameReader, call, frame, parse_trailers
from polling import eventually
from targets.v1 import commands_pb2, queries_pb2

from myko.errors import ConfigError
from myko.gateway.server import Gateway
from myko.settings import GatewaySettings
from myko.v1 import command_pb2, query_pb2, repo_pb2

OK, INVALID_ARGUMENT, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNAVAILABLE = 0, 3, 4, 8, 12, 14


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
        pass_headers=("x-request-id", "x-token-bin"),
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
        headers={
            "x-request-id": "r-42",
            "x-token-bin": base64.b64encode(b"\x01\x02").decode(),
            "x-forwarded-for": "10.0.0.9",
            "x-custom": "not on the allow-list",
        },
    )
    assert reply.http_status == 200
    assert reply.headers["Content-Type"] == BINARY
    assert reply.code == OK
    result = command_pb2.CommandResult.FromString(reply.messages[0])
    assert (result.tx, result.command_type) == ("tx-1", "targets.v1.DeleteTarget")
    seen = env.backend.record.metadata[-1]
    assert seen["x-request-id"] == "r-42"
    assert seen["x-token-bin"] == b"\x01\x02"
    # Only the allow-listed headers (MYKO_GATEWAY_PASS_HEADERS) go upstream.
    assert {"origin", "content-type", "x-forwarded-for", "x-custom"}.isdisjoint(seen)
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


async def _post(env: Env, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, int, str]:
    """(HTTP status, grpc-status, grpc-message) of a raw grpc-web POST."""
    async with env.http.post(env.base + path, data=body, headers=headers) as resp:
        trailers: dict[str, str] = {}
        text = resp.headers.get("Content-Type", "").startswith("application/grpc-web-text")
        async for flag, payload in FrameReader(resp, text=text).frames():
            if flag & 0x80:
                trailers = parse_trailers(payload)
        return resp.status, int(trailers.get("grpc-status", "-1")), unquote(trailers.get("grpc-message", ""))


@pytest.mark.parametrize("path", ["/myko.v1.CommandBus/Execute", "/myko.v1.QueryBus/Watch"])
async def test_non_ascii_header_value_is_invalid_argument(env: Env, path: str) -> None:
    request = _command("tx-3") if "Command" in path else _query(queries_pb2.AllTargets())
    headers = {"Content-Type": BINARY, "x-request-id": "réquest-ü"}
    http_status, code, message = await _post(env, path, frame(request), headers)
    assert (http_status, code) == (200, INVALID_ARGUMENT)
    assert message.startswith("header x-request-id: ")


async def test_non_ascii_value_of_a_header_not_passed_upstream_is_ignored(env: Env) -> None:
    headers = {"Content-Type": BINARY, "x-other": "réquest-ü"}
    http_status, code, _ = await _post(env, "/myko.v1.CommandBus/Execute", frame(_command("tx-3")), headers)
    assert (http_status, code) == (200, OK)


async def test_far_deadline_means_no_deadline(env: Env) -> None:
    # 99999999 hours overflows grpc's deadline arithmetic: it used to be an instant DEADLINE_EXCEEDED.
    reply = await call(
        env.http,
        f"{env.base}/myko.v1.QueryBus/Get",
        _query(queries_pb2.AllTargets()),
        headers={"grpc-timeout": "99999999H"},
    )
    assert reply.code == OK
    assert env.backend.record.time_remaining[-1] is None


async def test_unknown_type_text_is_echoed_only_in_part(env: Env) -> None:
    # The backend echoes the type name whole (6 kB: under grpc's 8 KiB soft limit on metadata).
    huge = "targets.v1.Nope" + "x" * 6_000
    request = query_pb2.QueryRequest(query=any_pb2.Any(type_url=f"type.googleapis.com/{huge}"))
    reply = await call(env.http, f"{env.base}/myko.v1.QueryBus/Get", request.SerializeToString())
    assert reply.code == INVALID_ARGUMENT
    assert reply.message.startswith("query: unknown type targets.v1.Nopexxx")
    assert len(reply.message) < 1100


async def test_upstream_outage_names_no_internal_address(env: Env) -> None:
    await env.backend.server.stop(grace=None)
    reply = await call(
        env.http, f"{env.base}/myko.v1.CommandBus/Execute", _command("tx-4"), headers={"grpc-timeout": "2S"}
    )
    assert reply.code in (UNAVAILABLE, DEADLINE_EXCEEDED)
    assert "127.0.0.1" not in reply.message and "ipv4" not in reply.message


@pytest.mark.parametrize(
    ("body", "text", "code", "says"),
    [
        (frame(b"a") + frame(b"b"), False, INVALID_ARGUMENT, "exactly one request message"),
        (frame(b"") * 1000, False, INVALID_ARGUMENT, "exactly one request message"),
        (frame(b"a", flag=0x01), False, INVALID_ARGUMENT, "compressed"),
        (frame(b"a", flag=0x40), False, INVALID_ARGUMENT, "flags"),
        (b"", False, INVALID_ARGUMENT, "got 0"),
        (frame(b"abc")[:-1], False, INVALID_ARGUMENT, "declares 3 bytes"),
        # Frame header alone, declaring more than MYKO_GATEWAY_MAX_MESSAGE_BYTES: refused before any payload.
        (struct.pack(">BI", 0, 5 * 1024 * 1024), False, RESOURCE_EXHAUSTED, "over the gateway's limit"),
        (b"AAA=" * 100, True, INVALID_ARGUMENT, "base64 chunks"),
        (b"!!!!", True, INVALID_ARGUMENT, "invalid base64"),
        (base64.b64encode(frame(b"a"))[:-1], True, INVALID_ARGUMENT, "inside a base64 quad"),
    ],
)
async def test_bad_bodies_get_a_status_naming_the_fault(
    env: Env, body: bytes, text: bool, code: int, says: str
) -> None:
    headers = {"Content-Type": TEXT if text else BINARY}
    http_status, got, message = await _post(env, "/myko.v1.CommandBus/Execute", body, headers)
    assert (http_status, got) == (200, code)
    assert says in message
    assert env.backend.record.metadata == []  # nothing reached the service


async def test_body_over_the_request_limit_is_refused_from_its_length(env: Env) -> None:
    limit = env.gateway.admission.gauge.limit  # any large number will do; what matters is the header
    assert limit > 0
    body = b"\x00" * (9 * 1024 * 1024)  # over 2 x 4 MiB + 64 KiB
    http_status, code, message = await _post(
        env, "/myko.v1.CommandBus/Execute", body, {"Content-Type": BINARY}
    )
    assert (http_status, code) == (200, RESOURCE_EXHAUSTED)
    assert "request body" in message


async def test_text_body_may_be_several_padded_chunks(env: Env) -> None:
    # A valid message split into two padded base64 chunks, with line breaks: still one message.
    raw = frame(_command("tx-5"))
    body = base64.b64encode(raw[:7]) + b"\r\n" + base64.b64encode(raw[7:])
    http_status, code, _ = await _post(env, "/myko.v1.CommandBus/Execute", body, {"Content-Type": TEXT})
    assert (http_status, code) == (200, OK)


@pytest.mark.parametrize("path", ["/%00", "/a%00b/c", "/" + "x" * 5000, "/assets/" + "y" * 300 + ".js"])
async def test_odd_ui_paths_are_not_found_not_500(env: Env, path: str) -> None:
    async with env.http.get(env.base + path) as resp:
        assert resp.status in (404, 200)  # 200: SPA fallback for a page-like path
        assert resp.status != 500


async def test_unknown_method_path_is_echoed_only_in_part(env: Env) -> None:
    path = "/x." + "y" * 6000 + "/Z"
    reply = await call(env.http, env.base + path, b"")
    assert reply.code == UNIMPLEMENTED
    assert len(reply.message) < 200


@pytest.mark.parametrize(
    ("env_vars", "says"),
    [
        ({"MYKO_GATEWAY_PASS_HEADERS": "x-request-id,grpc-timeout"}, "MYKO_GATEWAY_PASS_HEADERS"),
        ({"MYKO_GATEWAY_SCOPE_HEADERS": "Content-Type"}, "MYKO_GATEWAY_SCOPE_HEADERS"),
        ({"MYKO_GATEWAY_MAX_MESSAGE_BYTES": "10"}, "MYKO_GATEWAY_MAX_MESSAGE_BYTES"),
        ({"MYKO_GATEWAY_MAX_STREAMS": "many"}, "MYKO_GATEWAY_MAX_STREAMS"),
    ],
)
def test_bad_limit_and_header_settings_fail_fast(env_vars: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        GatewaySettings.from_env(env_vars)


def test_header_lists_are_read_lowercased() -> None:
    s = GatewaySettings.from_env(
        {
            "MYKO_GATEWAY_PASS_HEADERS": "X-Request-Id, X-Trace-Bin",
            "MYKO_GATEWAY_SCOPE_HEADERS": "Authorization",
            "MYKO_AUTH_DISABLED": "true",
        }
    )
    assert (s.pass_headers, s.scope_headers) == (("x-request-id", "x-trace-bin"), ("authorization",))
    open_gateway = GatewaySettings.from_env({"MYKO_AUTH_DISABLED": "true"})
    assert open_gateway.max_request_body_bytes == 2 * 4 * 1024 * 1024 + 64 * 1024


async def _refused_mid_body(port: int, *, sent_before_reading: int) -> bytes:
    """A request aiohttp refuses at its headers (a control character), whose client is
    still sending its 4 MiB body: what the client reads back once it looks."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body_bytes = 4 * 1024 * 1024
    writer.write(
        b"POST /myko.v1.CommandBus/Execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc-web\r\n"
        b"X-Odd: a\x0bb\r\nContent-Length: " + str(body_bytes).encode() + b"\r\n\r\n"
    )
    try:
        writer.write(b"\0" * sent_before_reading)
        await writer.drain()
        # The gateway has answered and would have closed by now; then the client reads.
        await asyncio.sleep(0.3)
        async with asyncio.timeout(15):
            answer = await reader.readline()
            with contextlib.suppress(ConnectionError):
                writer.write(b"\0" * (body_bytes - sent_before_reading))
                await writer.drain()
        return answer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_a_request_refused_at_its_headers_gets_its_400_while_its_body_still_arrives(env: Env) -> None:
    # Without a staged close the gateway's socket resets with the body unread, and the
    # reset discards the 400 before the client reads it.
    for sent in (0, 64 * 1024, 1024 * 1024):
        status_line = await _refused_mid_body(env.gateway.port, sent_before_reading=sent)
        assert status_line.split()[1:2] == [b"400"], (sent, status_line)
    # The gateway still serves others.
    async with env.http.get(f"{env.base}/healthz") as resp:
        assert resp.status == 200
