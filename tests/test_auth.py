"""Identity end to end, on the real broker: every public RPC, direct and through the gateway.

The services and the gateway trust a test issuer (tests/oidc_issuer.py) that
serves discovery and a JWKS on 127.0.0.1 and mints tokens with keys the test
holds, so the bad cases (forged, expired, wrong issuer or audience) are real
tokens too. The example application's users:

    alice: operator, tenant north     bob:  viewer, north     eve: no role, north
    carol: operator, tenant south     dave: viewer, south     root: myko-admin
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import grpc
import pytest
from conftest import InProcessStack
from google.protobuf import any_pb2
from google.protobuf.message import Message
from grpc_web_client import BINARY, FrameReader, call, frame, parse_trailers
from kafka_inspect import read_topic
from oidc_issuer import MintingIssuer, ServiceClient
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

from myko.app import App
from myko.events import H_PRINCIPAL
from myko.gateway.server import Gateway
from myko.saga_service import SagaService
from myko.settings import AuthSettings, GatewaySettings, SagaSettings, _Env
from myko.v1 import command_pb2, identity_pb2, live_pb2, query_pb2, relations_pb2, report_pb2

pytestmark = pytest.mark.kafka

Target = entities_pb2.Target
Zone = entities_pb2.Zone
USERS: dict[str, tuple[list[str], str | None]] = {
    "alice": (["operator"], "north"),
    "bob": (["viewer"], "north"),
    "eve": ([], "north"),
    "carol": (["operator"], "south"),
    "dave": (["viewer"], "south"),
    "root": (["myko-admin"], None),
}
# How long after expiry or revocation a stream may still run (issue 13: 5 s).
END_WITHIN_S = 5.0


@dataclass
class AuthedStack:
    issuer: MintingIssuer
    stack: InProcessStack
    gateway: Gateway
    http: aiohttp.ClientSession

    def token(self, user: str, **kw: Any) -> str:
        roles, tenant = USERS[user]
        return self.issuer.token(user, roles=roles, tenant=tenant, **kw)

    def bearer(self, user: str, **kw: Any) -> str:
        return f"Bearer {self.token(user, **kw)}"

    def channel(self, service: str) -> grpc.aio.Channel:
        channel = {
            "command": self.stack.clients.command,
            "query": self.stack.clients.query,
            "report": self.stack.clients.report,
        }[service]
        assert channel is not None
        return channel

    def web(self, path: str) -> str:
        return f"http://127.0.0.1:{self.gateway.port}{path}"


@pytest.fixture
async def authed(myko_env: dict[str, str], example_app: App, tmp_path: Path) -> AsyncIterator[AuthedStack]:
    issuer = await MintingIssuer().start()
    env = {k: v for k, v in myko_env.items() if k != "MYKO_AUTH_DISABLED"}
    env.update(issuer.env())
    stack = await InProcessStack.start(env, example_app)
    gateway = Gateway(
        GatewaySettings(
            port=0,
            command_addr=f"127.0.0.1:{stack.command.grpc.port}",
            query_addr=f"127.0.0.1:{stack.query.grpc.port}",
            report_addr=f"127.0.0.1:{stack.report.grpc.port}",
            ui_dist=str(tmp_path),
            live_heartbeat_ms=500,
            auth=AuthSettings.from_env(_Env(env)),
        )
    )
    await gateway.start()
    http = aiohttp.ClientSession()
    try:
        yield AuthedStack(issuer, stack, gateway, http)
    finally:
        await http.close()
        await gateway.stop()
        await stack.stop()
        await issuer.stop()


# --- calling every public RPC the way a client would -------------------------------------
def _pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def execute_request(command: Message) -> command_pb2.CommandRequest:
    return command_pb2.CommandRequest(tx=str(uuid.uuid4()), command=_pack(command))


def query_request(query: Message) -> query_pb2.QueryRequest:
    return query_pb2.QueryRequest(query=_pack(query))


def report_request(report: Message) -> report_pb2.ReportRequest:
    return report_pb2.ReportRequest(report=_pack(report))


# (service, method, request, response class)
RPCS: dict[str, tuple[str, str, Callable[[], Message], type[Message]]] = {
    "CommandBus/Execute": (
        "command",
        "/myko.v1.CommandBus/Execute",
        lambda: execute_request(commands_pb2.SetZone(name="z")),
        command_pb2.CommandResult,
    ),
    "CommandBus/ExecuteBatch": (
        "command",
        "/myko.v1.CommandBus/ExecuteBatch",
        lambda: command_pb2.CommandBatchRequest(commands=[execute_request(commands_pb2.SetZone(name="z"))]),
        command_pb2.CommandBatchResult,
    ),
    "QueryBus/Watch": (
        "query",
        "/myko.v1.QueryBus/Watch",
        lambda: query_request(queries_pb2.AllZones()),
        query_pb2.QueryResult,
    ),
    "QueryBus/Get": (
        "query",
        "/myko.v1.QueryBus/Get",
        lambda: query_request(queries_pb2.AllZones()),
        query_pb2.QueryResult,
    ),
    "ReportBus/Watch": (
        "report",
        "/myko.v1.ReportBus/Watch",
        lambda: report_request(reports_pb2.ZoneTotals()),
        report_pb2.ReportResult,
    ),
    "ReportBus/Get": (
        "report",
        "/myko.v1.ReportBus/Get",
        lambda: report_request(reports_pb2.ZoneTotals()),
        report_pb2.ReportResult,
    ),
}


async def direct(s: AuthedStack, rpc: str, authorization: str | None) -> str:
    """The status name a direct gRPC call gets (a Watch: its first message or its error)."""
    service, method, request, reply = RPCS[rpc]
    metadata = (("authorization", authorization),) if authorization is not None else None
    channel = s.channel(service)
    try:
        if method.endswith("/Watch"):
            stream = channel.unary_stream(
                method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=reply.FromString,
            )(request(), metadata=metadata)
            try:
                async with asyncio.timeout(15):
                    await stream.read()
            finally:
                stream.cancel()
        else:
            unary = channel.unary_unary(
                method,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=reply.FromString,
            )
            answer = await unary(request(), metadata=metadata, timeout=15)
            if isinstance(answer, command_pb2.CommandBatchResult):
                return _batch_code(answer)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


def _batch_code(answer: command_pb2.CommandBatchResult) -> str:
    """A batch call that succeeded answers its one command's own status (a policy refusal, say)."""
    (outcome,) = answer.outcomes
    return _code_name(outcome.error.code) if outcome.HasField("error") else "OK"


class WebStream:
    """A grpc-web response read frame by frame, as a browser reads a stream."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self._frames = FrameReader(resp, text=False).frames()
        self.trailers: dict[str, str] = {}

    @classmethod
    async def open(cls, s: AuthedStack, path: str, request: bytes, authorization: str | None) -> WebStream:
        headers = {"Content-Type": BINARY, "X-Grpc-Web": "1"}
        if authorization is not None:
            headers["Authorization"] = authorization
        resp = await s.http.post(s.web(path), data=frame(request), headers=headers)
        return cls(resp)

    async def next(self) -> bytes | None:
        """The next message; None once the trailers came (then `code` says how it ended)."""
        async for flag, payload in self._frames:
            if flag & 0x80:
                self.trailers = parse_trailers(payload)
                return None
            return payload
        return None

    @property
    def code(self) -> str:
        return _code_name(int(self.trailers.get("grpc-status", "-1")))

    def close(self) -> None:
        self.resp.close()


def _code_name(code: int) -> str:
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return str(c.name)
    return f"?{code}"


async def via_gateway(s: AuthedStack, rpc: str, authorization: str | None) -> str:
    """The status name a browser's grpc-web call gets (a Watch: its first message or its end)."""
    _, method, request, _ = RPCS[rpc]
    if method.endswith("/Watch"):
        stream = await WebStream.open(s, method, request().SerializeToString(), authorization)
        try:
            async with asyncio.timeout(15):
                return "OK" if await stream.next() is not None else stream.code
        finally:
            stream.close()
    headers = {"Authorization": authorization} if authorization is not None else {}
    reply = await call(s.http, s.web(method), request().SerializeToString(), headers=headers)
    if reply.code == 0 and method.endswith("/ExecuteBatch"):
        (message,) = reply.messages
        return _batch_code(command_pb2.CommandBatchResult.FromString(message))
    return _code_name(reply.code)


def live_open(**subs: Message) -> bytes:
    out = live_pb2.LiveOpen()
    for sub_id, msg in subs.items():
        sub = out.subscriptions.add(sub_id=sub_id)
        if isinstance(msg, (queries_pb2.AllZones, queries_pb2.AllTargets)):
            sub.query.CopyFrom(query_request(msg))
        else:
            sub.report.CopyFrom(report_request(msg))
    return out.SerializeToString()


async def live_bus(s: AuthedStack, authorization: str | None) -> str:
    """LiveBus/Open through the gateway: the stream's status, or the first subscription's."""
    stream = await WebStream.open(
        s, "/myko.v1.LiveBus/Open", live_open(s1=queries_pb2.AllZones()), authorization
    )
    try:
        async with asyncio.timeout(15):
            while (payload := await stream.next()) is not None:
                f = live_pb2.LiveFrame.FromString(payload)
                kind = f.WhichOneof("body")
                if kind == "error":
                    return _code_name(f.error.code)
                if kind == "query":
                    return "OK"
            return stream.code
    finally:
        stream.close()


# --- the matrix -----------------------------------------------------------------------------
CASES: dict[str, Callable[[AuthedStack, str], str | None]] = {
    "no token": lambda s, rpc: None,
    "malformed": lambda s, rpc: "Bearer not-a.jwt",
    "bad signature": lambda s, rpc: f"Bearer {s.issuer.forged(sub='alice', roles=['operator'])}",
    "expired": lambda s, rpc: s.bearer("alice", ttl_s=-30),
    "wrong issuer": lambda s, rpc: s.bearer("alice", iss="https://idp.example.com"),
    "wrong audience": lambda s, rpc: s.bearer("alice", aud="another-api"),
    # A viewer may not write; a user with no role may not read either.
    "no role": lambda s, rpc: s.bearer("bob" if rpc.startswith("CommandBus") else "eve"),
    "right token": lambda s, rpc: s.bearer("alice"),
}
EXPECTED = {
    **dict.fromkeys(
        ["no token", "malformed", "bad signature", "expired", "wrong issuer", "wrong audience"],
        "UNAUTHENTICATED",
    ),
    "no role": "PERMISSION_DENIED",
    "right token": "OK",
}


async def test_every_public_rpc_answers_every_credential_with_the_right_code(authed: AuthedStack) -> None:
    got: dict[tuple[str, str], str] = {}
    for case, make in CASES.items():
        for rpc in RPCS:
            got[(f"{rpc} (direct)", case)] = await direct(authed, rpc, make(authed, rpc))
            got[(f"{rpc} (grpc-web)", case)] = await via_gateway(authed, rpc, make(authed, rpc))
        got[("LiveBus/Open (grpc-web)", case)] = await live_bus(authed, make(authed, "LiveBus/Open"))
    expected = {key: EXPECTED[key[1]] for key in got}
    table = "\n".join(f"{rpc:32} {case:16} {code}" for (rpc, case), code in got.items())
    print(table)  # the matrix as tested (pytest -s shows it)
    assert got == expected, table
    assert len(got) == 13 * len(CASES)


async def test_bad_tokens_get_no_data_and_reach_no_handler(authed: AuthedStack) -> None:
    """A refused call writes nothing: the zone a forged operator token asks for never appears."""
    forged = f"Bearer {authed.issuer.forged(sub='alice', roles=['operator'])}"
    assert await direct(authed, "CommandBus/Execute", forged) == "UNAUTHENTICATED"
    assert await via_gateway(authed, "CommandBus/Execute", forged) == "UNAUTHENTICATED"
    zones = await _get_items(authed, "alice", queries_pb2.AllZones(), Zone)
    assert zones == []


# --- row-level scoping under shared evaluations --------------------------------------------
async def _execute(s: AuthedStack, user: str, command: Message) -> command_pb2.CommandResult:
    unary = s.channel("command").unary_unary(
        "/myko.v1.CommandBus/Execute",
        request_serializer=command_pb2.CommandRequest.SerializeToString,
        response_deserializer=command_pb2.CommandResult.FromString,
    )
    result: command_pb2.CommandResult = await unary(
        execute_request(command), metadata=(("authorization", s.bearer(user)),), timeout=15
    )
    return result


def _watch(s: AuthedStack, user: str, query: Message, *, token: str | None = None) -> Any:
    return s.channel("query").unary_stream(
        "/myko.v1.QueryBus/Watch",
        request_serializer=query_pb2.QueryRequest.SerializeToString,
        response_deserializer=query_pb2.QueryResult.FromString,
    )(query_request(query), metadata=(("authorization", token or s.bearer(user)),))


def _names(result: query_pb2.QueryResult, cls: type[Message]) -> list[str]:
    out = []
    for packed in result.items:
        msg = cls()
        packed.Unpack(msg)
        out.append(msg.name)  # type: ignore[attr-defined]
    return out


async def _get_items(s: AuthedStack, user: str, query: Message, cls: type[Message]) -> list[str]:
    unary = s.channel("query").unary_unary(
        "/myko.v1.QueryBus/Get",
        request_serializer=query_pb2.QueryRequest.SerializeToString,
        response_deserializer=query_pb2.QueryResult.FromString,
    )
    result = await unary(query_request(query), metadata=(("authorization", s.bearer(user)),), timeout=15)
    return _names(result, cls)


async def _until(stream: Any, cls: type[Message], predicate: Callable[[list[str]], bool]) -> list[str]:
    async with asyncio.timeout(15):
        while True:
            names = _names(await stream.read(), cls)
            if predicate(names):
                return names


async def test_each_tenant_sees_only_its_rows_while_sharing_evaluations(authed: AuthedStack) -> None:
    s = authed
    await _execute(s, "alice", commands_pb2.SetZone(id="n-zone", name="north zone"))
    await _execute(s, "carol", commands_pb2.SetZone(id="s-zone", name="south zone"))
    await _execute(s, "alice", commands_pb2.SetTarget(id="n1", name="north-1", zone_id="n-zone"))
    await _execute(s, "carol", commands_pb2.SetTarget(id="s1", name="south-1", zone_id="s-zone"))

    # Two north users (a viewer and the operator) and a south viewer watch the same query.
    bob, alice, dave = (_watch(s, u, queries_pb2.AllTargets()) for u in ("bob", "alice", "dave"))
    try:
        assert await _until(bob, Target, lambda n: "north-1" in n) == ["north-1"]
        assert await _until(alice, Target, lambda n: "north-1" in n) == ["north-1"]
        assert await _until(dave, Target, lambda n: "south-1" in n) == ["south-1"]
        # One evaluation per tenant, not per caller: shared within a scope, never across.
        keys = [cast(tuple[str, bytes, str], k) for k in s.stack.query.hub._evals]
        assert sorted(k[2] for k in keys if k[0] == "targets.v1.AllTargets") == ["north", "south"]

        # After changes: each side sees its own new row, never the other's.
        await _execute(s, "alice", commands_pb2.SetTarget(id="n2", name="north-2"))
        await _execute(s, "carol", commands_pb2.SetTarget(id="s2", name="south-2"))
        assert await _until(bob, Target, lambda n: "north-2" in n) == ["north-1", "north-2"]
        assert await _until(dave, Target, lambda n: "south-2" in n) == ["south-1", "south-2"]
    finally:
        for stream in (bob, alice, dave):
            stream.cancel()

    # Reports and Gets are scoped the same way.
    assert await _get_items(s, "dave", queries_pb2.AllZones(), Zone) == ["south zone"]
    report = s.channel("report").unary_unary(
        "/myko.v1.ReportBus/Get",
        request_serializer=report_pb2.ReportRequest.SerializeToString,
        response_deserializer=report_pb2.ReportResult.FromString,
    )
    value = await report(
        report_request(reports_pb2.ZoneTotals()), metadata=(("authorization", s.bearer("bob")),), timeout=15
    )
    totals = reports_pb2.ZoneTotalsValue()
    value.value.Unpack(totals)
    assert [(z.zone_name, z.target_count) for z in totals.zones] == [("north zone", 1)]


async def test_windows_are_scoped_and_shared_per_tenant(authed: AuthedStack) -> None:
    """A paged window counts and shows only the caller's tenant; identical windows of one
    tenant share an evaluation, and the same window of another tenant is its own."""
    s = authed
    for i in range(3):
        await _execute(s, "alice", commands_pb2.SetTarget(id=f"n{i}", name=f"north-{i}"))
    await _execute(s, "carol", commands_pb2.SetTarget(id="s0", name="south-0"))
    page = queries_pb2.TargetsPage(offset=1, limit=2)
    bob, alice, dave = (_watch(s, u, page) for u in ("bob", "alice", "dave"))
    try:
        async with asyncio.timeout(15):
            # Read until each reflects the writes above (the service may still be catching up).
            north = await bob.read()
            while north.window.total < 3:
                north = await bob.read()
            assert _names(north, Target) == ["north-1", "north-2"] and north.window.offset == 1
            assert await _until(alice, Target, lambda n: n == ["north-1", "north-2"])
            south = await dave.read()
            while south.window.total < 1:
                south = await dave.read()
            # Past the end of south's single row: empty, counted in south's tenant only.
            assert _names(south, Target) == [] and south.window.total == 1
        keys = [cast(tuple[str, bytes, str], k) for k in s.stack.query.hub._evals]
        assert sorted(k[2] for k in keys if k[0] == "targets.v1.TargetsPage") == ["north", "south"]
    finally:
        for stream in (bob, alice, dave):
            stream.cancel()


async def test_no_one_writes_into_another_tenant(authed: AuthedStack) -> None:
    s = authed
    await _execute(s, "alice", commands_pb2.SetZone(id="n-zone", name="north zone"))
    await _execute(s, "alice", commands_pb2.SetTarget(id="n1", name="north-1", zone_id="n-zone"))
    attempts: list[Message] = [
        commands_pb2.SetTarget(id="n1", name="taken over"),  # overwrite a north target
        commands_pb2.SetTarget(name="intruder", zone_id="n-zone"),  # into a north zone
        commands_pb2.RecordHits(id="n1", count=1),
        commands_pb2.DeleteTarget(id="n1"),
        commands_pb2.SetZone(id="n-zone", name="mine now"),
        commands_pb2.DeleteZone(id="n-zone"),
    ]
    for command in attempts:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _execute(s, "carol", command)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED, command
        assert "belongs to another tenant" in (refused.value.details() or "")
    # Only the framework's sagas may send the relations' commands.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _execute(s, "alice", relations_pb2.EnsureChild(relation="zone-perimeter", owner_id="n-zone"))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert await _get_items(s, "bob", queries_pb2.AllTargets(), Target) == ["north-1"]


async def test_gateway_feeds_are_shared_per_token_only(authed: AuthedStack) -> None:
    s = authed
    await _execute(s, "alice", commands_pb2.SetZone(id="n-zone", name="north zone"))
    await _execute(s, "carol", commands_pb2.SetZone(id="s-zone", name="south zone"))
    bob_token = s.bearer("bob")
    pages = [
        await WebStream.open(s, "/myko.v1.LiveBus/Open", live_open(z=queries_pb2.AllZones()), auth)
        for auth in (bob_token, bob_token, s.bearer("dave"))
    ]
    try:
        seen = []
        for page in pages:
            async with asyncio.timeout(15):
                while True:
                    payload = await page.next()
                    assert payload is not None, page.trailers
                    f = live_pb2.LiveFrame.FromString(payload)
                    if f.WhichOneof("body") == "query":
                        seen.append(_names(f.query, Zone))
                        break
        assert seen == [["north zone"], ["north zone"], ["south zone"]]
        # The same token shares a feed; another caller never does, even of the same tenant.
        assert s.gateway.hub.feed_count == 2
    finally:
        for page in pages:
            page.close()


# --- streams follow the token --------------------------------------------------------------
async def test_streams_end_within_seconds_of_the_tokens_expiry(authed: AuthedStack) -> None:
    s = authed
    ttl = 3
    token = s.bearer("bob", ttl_s=ttl)
    expires = time.time() + ttl
    direct_watch = _watch(s, "bob", queries_pb2.AllZones(), token=token)
    page = await WebStream.open(s, "/myko.v1.LiveBus/Open", live_open(z=queries_pb2.AllZones()), token)
    web_watch = await WebStream.open(
        s, "/myko.v1.QueryBus/Watch", query_request(queries_pb2.AllZones()).SerializeToString(), token
    )
    try:
        await direct_watch.read()
        assert await web_watch.next() is not None
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async with asyncio.timeout(ttl + END_WITHIN_S + 5):
                while True:
                    await direct_watch.read()
        assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert time.time() - expires < END_WITHIN_S
        for stream in (page, web_watch):
            async with asyncio.timeout(END_WITHIN_S):
                while await stream.next() is not None:
                    pass
            assert stream.code == "UNAUTHENTICATED", stream.trailers
        assert time.time() - expires < END_WITHIN_S
    finally:
        direct_watch.cancel()
        page.close()
        web_watch.close()


async def test_revoking_a_subject_ends_its_streams_and_refuses_its_tokens(authed: AuthedStack) -> None:
    s = authed
    await _execute(s, "alice", commands_pb2.SetZone(id="n-zone", name="north zone"))
    bob = s.bearer("bob")
    query_watch = _watch(s, "bob", queries_pb2.AllZones(), token=bob)
    report_watch = s.channel("report").unary_stream(
        "/myko.v1.ReportBus/Watch",
        request_serializer=report_pb2.ReportRequest.SerializeToString,
        response_deserializer=report_pb2.ReportResult.FromString,
    )(report_request(reports_pb2.ZoneTotals()), metadata=(("authorization", bob),))
    page = await WebStream.open(s, "/myko.v1.LiveBus/Open", live_open(z=queries_pb2.AllZones()), bob)
    alice_watch = _watch(s, "alice", queries_pb2.AllZones())
    try:
        await query_watch.read()
        await report_watch.read()
        await alice_watch.read()
        assert await page.next() is not None

        # Only an admin may revoke.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _execute(s, "alice", identity_pb2.RevokeTokens(subject="bob"))
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        # The admin path: `myko revoke`, with an admin's token in MYKO_TOKEN.
        revoke = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "myko",
            "revoke",
            "bob",
            "--command-addr",
            f"127.0.0.1:{s.stack.command.grpc.port}",
            env={**os.environ, "MYKO_TOKEN": s.token("root")},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(revoke.communicate(), 60)
        assert revoke.returncode == 0, err.decode()
        revoked_at = time.time()
        assert "revoked the tokens 'bob' holds now" in out.decode()

        for watch in (query_watch, report_watch):
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                async with asyncio.timeout(END_WITHIN_S + 5):
                    while True:
                        await watch.read()
            assert ended.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in (ended.value.details() or "")
        async with asyncio.timeout(END_WITHIN_S + 5):
            while await page.next() is not None:
                pass
        assert page.code == "UNAUTHENTICATED", page.trailers
        assert time.time() - revoked_at < END_WITHIN_S

        # The old token is refused everywhere; others are untouched.
        assert await direct(s, "QueryBus/Get", bob) == "UNAUTHENTICATED"
        assert await via_gateway(s, "QueryBus/Get", bob) == "UNAUTHENTICATED"
        alice_watch.cancel()
        assert await direct(s, "QueryBus/Get", s.bearer("alice")) == "OK"
        # Signing in again (a token issued after the revocation) works.
        await asyncio.sleep(1.1)
        assert await direct(s, "QueryBus/Get", s.bearer("bob")) == "OK"

        # The revocation is an event like any other, recorded with who did it.
        topic = f"{s.stack.env['MYKO_TOPIC_PREFIX']}myko.v1.Revocation"
        [record] = await read_topic(s.stack.env["KAFKA_BOOTSTRAP_SERVERS"], topic)
        assert dict(record.headers)[H_PRINCIPAL] == b"root"
        revocation = identity_pb2.Revocation.FromString(record.value)
        assert (revocation.subject, revocation.revoked_by) == ("bob", "root")
    finally:
        for stream in (query_watch, report_watch, alice_watch):
            stream.cancel()
        page.close()


# --- who did it ----------------------------------------------------------------------------
async def test_events_record_their_issuer_and_saga_commands_run_as_the_saga(authed: AuthedStack) -> None:
    s = authed
    s.issuer.clients["saga-svc"] = ServiceClient(secret="saga-secret")
    env = {
        **s.stack.env,
        "MYKO_COMMAND_ADDR": f"127.0.0.1:{s.stack.command.grpc.port}",
        "MYKO_SAGA_PORT": "0",
        "MYKO_SAGA_GROUP_ID": "saga",
        "MYKO_SAGA_CLIENT_ID": "saga-svc",
        "MYKO_SAGA_CLIENT_SECRET": "saga-secret",
    }
    sagas = SagaService(SagaSettings.from_env(env), s.stack.app)
    async with asyncio.timeout(60):
        await sagas.start()
    try:
        zone = await _execute(s, "alice", commands_pb2.SetZone(id="n-zone", name="north zone"))
        # The perimeter Target the relation's saga creates, in the zone's tenant.
        watch = _watch(s, "bob", queries_pb2.AllTargets())
        try:
            assert await _until(watch, Target, lambda n: "perimeter" in n) == ["perimeter"]
        finally:
            watch.cancel()
        bootstrap = s.stack.env["KAFKA_BOOTSTRAP_SERVERS"]
        prefix = s.stack.env["MYKO_TOPIC_PREFIX"]
        zones = await read_topic(bootstrap, f"{prefix}targets.v1.Zone")
        targets = await read_topic(bootstrap, f"{prefix}targets.v1.Target")
        assert [dict(r.headers)[H_PRINCIPAL] for r in zones] == [b"alice"]
        assert [dict(r.headers)[H_PRINCIPAL] for r in targets] == [b"saga-svc"]
        assert zone.events[0].principal == "alice"
        assert s.issuer.hits.get("/token", 0) >= 1
    finally:
        await sagas.stop()
