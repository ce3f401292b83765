"""LiveBus/Open served by query_svc and report_svc (myko/live_streams.py), over the real broker.

Many subscriptions on one stream get what separate Watches get; one bad
subscription gets its LiveError without disturbing the others; the stream's
bounds; auth per stream and policy/tenant scope per subscription.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from conftest import InProcessStack
from google.protobuf import any_pb2
from google.protobuf.message import Message
from polling import eventually
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2
from test_auth import END_WITHIN_S, AuthedStack, authed  # noqa: F401 (the fixture)

from myko import Client, PermissionDenied
from myko.app import App
from myko.errors import ConfigError
from myko.v1 import live_pb2, query_pb2, report_pb2

pytestmark = pytest.mark.kafka

ACTIVE = entities_pb2.TARGET_STATUS_ACTIVE


def _pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg, deterministic=True)
    return out


def _sub(sub_id: str, msg: Message) -> live_pb2.LiveSubscription:
    if isinstance(msg, reports_pb2.TargetCountsByStatus | reports_pb2.ZoneTotals):
        return live_pb2.LiveSubscription(sub_id=sub_id, report=report_pb2.ReportRequest(report=_pack(msg)))
    return live_pb2.LiveSubscription(sub_id=sub_id, query=query_pb2.QueryRequest(query=_pack(msg)))


def _open(
    channel: grpc.aio.Channel,
    subs: list[live_pb2.LiveSubscription],
    *,
    grouped: bool = False,
    token: str | None = None,
) -> Any:
    call = channel.unary_stream(
        "/myko.v1.LiveBus/Open",
        request_serializer=live_pb2.LiveOpen.SerializeToString,
        response_deserializer=live_pb2.LiveFrame.FromString,
    )
    metadata = (("authorization", token),) if token is not None else None
    return call(live_pb2.LiveOpen(subscriptions=subs, group_results=grouped), metadata=metadata)


class Frames:
    """A raw LiveBus stream: the newest result and the error of each sub_id, and every frame."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.frames: list[live_pb2.LiveFrame] = []
        self.latest: dict[str, Message] = {}
        self.errors: dict[str, live_pb2.LiveError] = {}

    async def until(self, done: Callable[[Frames], bool], timeout_s: float = 20) -> None:
        async with asyncio.timeout(timeout_s):
            while not done(self):
                frame = await self.call.read()
                assert frame is not grpc.aio.EOF, "the stream ended"  # type: ignore[attr-defined]
                self.frames.append(frame)
                body = frame.WhichOneof("body")
                if body in ("query", "report"):
                    for sid in (frame.sub_id, *frame.more_sub_ids):
                        self.latest[sid] = getattr(frame, body)
                elif body == "error":
                    self.errors[frame.sub_id] = frame.error


def _names(result: Message) -> list[str]:
    out = []
    for packed in result.items:  # type: ignore[attr-defined]
        target = entities_pb2.Target()
        packed.Unpack(target)
        out.append(target.name)
    return out


async def test_many_subscriptions_on_one_stream_get_what_separate_watches_get(
    client: Client, stack: InProcessStack
) -> None:
    a = await client.execute(commands_pb2.SetTarget(name="alpha"))
    alpha = a.events[0].id
    requests: list[Message] = [
        queries_pb2.AllTargets(),
        queries_pb2.AllTargets(),
        queries_pb2.TargetById(id=alpha),
        queries_pb2.TargetsByStatus(status=ACTIVE),
        queries_pb2.TargetsByStatus(status=ACTIVE),
        reports_pb2.TargetCountsByStatus(),
    ]
    async with client.live() as live:
        subs = [live.watch(r, at_least=a) for r in requests]  # type: ignore[call-overload]
        watches = [client.watch(r, at_least=a) for r in requests]  # type: ignore[call-overload]
        try:
            async with asyncio.timeout(30):
                firsts = [await anext(s) for s in subs]
                assert firsts == [await anext(w) for w in watches]
                assert [t.name for t in firsts[0]] == ["alpha"]
                assert live.streams == 2  # queries to query_svc, the report to report_svc
                assert stack.query.streams.subscriptions == 5
                # The shared evaluations are the Watches' ones, one per distinct request; the
                # stream joins each once (3), however many of its subscriptions ask for it.
                assert stack.query.hub.subscribers == 5 + 3 and len(stack.query.hub) == 3

                await client.execute(commands_pb2.SetTarget(name="beta"))
                last = await client.execute(commands_pb2.RecordHits(id=alpha, count=2))
                # Each ends on the newest value, the one its own Watch ends on.
                for request, sub, watch in zip(requests, subs, watches, strict=True):
                    final = await client.get(request, at_least=last)  # type: ignore[call-overload]
                    while await anext(watch) != final:
                        pass
                    while await anext(sub) != final:
                        pass
        finally:
            for w in watches:
                await w.aclose()
    # Leaving the block ends the stream and releases its subscriptions.
    await eventually(
        lambda: not stack.query.streams.streams and not stack.query.hub.subscribers, timeout_s=10
    )
    with pytest.raises(ConfigError):
        live.watch(queries_pb2.AllTargets())


async def test_a_grouped_stream_sends_a_shared_result_once(client: Client, stack: InProcessStack) -> None:
    await client.execute(commands_pb2.SetTarget(name="alpha"))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.query.grpc.port}")
    subs = [_sub(f"s{i}", queries_pb2.AllTargets()) for i in range(5)]
    subs.append(_sub("other", queries_pb2.TargetsByStatus(status=ACTIVE)))
    grouped, plain = Frames(_open(channel, subs, grouped=True)), Frames(_open(channel, subs))
    try:
        for f in (grouped, plain):
            await f.until(lambda f: len(f.latest) == 6)
            assert f.frames[0].WhichOneof("body") == "opened"
        await client.execute(commands_pb2.SetTarget(name="beta"))
        for f in (grouped, plain):
            f.frames.clear()
            await f.until(lambda f: all(_names(r) == ["alpha", "beta"] for r in f.latest.values()))
            assert all(fr.WhichOneof("body") == "query" for fr in f.frames)
        # One frame names the five AllTargets subscriptions; the old contract sends five.
        # (A loaded machine may see the change land in more than one emission: count per emission.)
        named = {tuple(sorted((fr.sub_id, *fr.more_sub_ids))) for fr in grouped.frames}
        assert named == {("other",), ("s0", "s1", "s2", "s3", "s4")}
        assert not any(fr.more_sub_ids for fr in plain.frames)
        assert {fr.sub_id for fr in plain.frames} == {"other", "s0", "s1", "s2", "s3", "s4"}
    finally:
        grouped.call.cancel()
        plain.call.cancel()
        await channel.close(None)


async def test_one_bad_subscription_gets_its_error_and_the_others_go_on(
    client: Client, stack: InProcessStack
) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.query.grpc.port}")
    unknown = live_pb2.LiveSubscription(
        sub_id="unknown",
        query=query_pb2.QueryRequest(query=any_pb2.Any(type_url="type.googleapis.com/no.Such", value=b"")),
    )
    garbled = live_pb2.LiveSubscription(
        sub_id="garbled",
        query=query_pb2.QueryRequest(
            query=any_pb2.Any(type_url="type.googleapis.com/targets.v1.TargetById", value=b"\xff\xff")
        ),
    )
    subs = [
        _sub("good", queries_pb2.AllTargets()),
        unknown,
        garbled,
        _sub("report", reports_pb2.TargetCountsByStatus()),
        _sub("also-good", queries_pb2.TargetsByStatus(status=ACTIVE)),
    ]
    stream = Frames(_open(channel, subs, grouped=True))
    try:
        await stream.until(lambda f: len(f.errors) == 3 and len(f.latest) == 2)
        assert stream.errors["unknown"].code == grpc.StatusCode.UNIMPLEMENTED.value[0]
        assert stream.errors["garbled"].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert stream.errors["report"].code == grpc.StatusCode.UNIMPLEMENTED.value[0]
        assert "report_svc" in stream.errors["report"].message
        await client.execute(commands_pb2.SetTarget(name="gamma"))
        await stream.until(lambda f: all(_names(f.latest[k]) == ["gamma"] for k in ("good", "also-good")))
    finally:
        stream.call.cancel()
        await channel.close(None)
    # The typed client raises a subscription's error from its own iterator only.
    async with client.live() as live:
        good = live.watch(queries_pb2.AllTargets())
        bad = live.watch(queries_pb2.TargetById(id="x"))
        async with asyncio.timeout(20):
            assert [t.name for t in await anext(good)] == ["gamma"]
            assert await anext(bad) == []


@pytest.fixture
async def small_stack(myko_env: dict[str, str], example_app: App) -> AsyncIterator[InProcessStack]:
    env = {
        **myko_env,
        "MYKO_MAX_SUBSCRIPTIONS_PER_STREAM": "4",
        "MYKO_MAX_LIVE_SUBSCRIPTIONS": "6",
    }
    s = await InProcessStack.start(env, example_app)
    try:
        yield s
    finally:
        await s.stop()


async def _status(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        async with asyncio.timeout(20):
            while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
                pass
    return failed.value.code()


async def test_bounds_and_bad_requests_open_nothing(small_stack: InProcessStack) -> None:
    s = small_stack
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{s.query.grpc.port}")
    try:
        five = [_sub(f"s{i}", queries_pb2.AllTargets()) for i in range(5)]
        assert await _status(_open(channel, five)) is grpc.StatusCode.RESOURCE_EXHAUSTED
        twice = [_sub("s", queries_pb2.AllTargets()), _sub("s", queries_pb2.AllZones())]
        assert await _status(_open(channel, twice)) is grpc.StatusCode.INVALID_ARGUMENT
        nameless = [_sub("", queries_pb2.AllTargets())]
        assert await _status(_open(channel, nameless)) is grpc.StatusCode.INVALID_ARGUMENT
        empty = [live_pb2.LiveSubscription(sub_id="x")]
        assert await _status(_open(channel, empty)) is grpc.StatusCode.INVALID_ARGUMENT
        raw = channel.unary_stream("/myko.v1.LiveBus/Open", None, None)
        assert await _status(raw(b"\xff\xff\xff")) is grpc.StatusCode.INVALID_ARGUMENT
        assert s.query.streams.streams == 0 and s.query.hub.subscribers == 0

        # The process-wide limit: four held, two more fit, a third does not.
        held = Frames(_open(channel, five[:4]))
        await held.until(lambda f: len(f.latest) == 4)
        more = Frames(_open(channel, five[:2]))
        await more.until(lambda f: len(f.latest) == 2)
        assert await _status(_open(channel, five[:1])) is grpc.StatusCode.RESOURCE_EXHAUSTED
        more.call.cancel()
        await eventually(lambda: s.query.streams.subscriptions == 4, timeout_s=10)
        again = Frames(_open(channel, five[:1]))
        await again.until(lambda f: len(f.latest) == 1)
        held.call.cancel()
        again.call.cancel()
    finally:
        await channel.close(None)


async def test_auth_per_stream_and_policy_and_tenant_per_subscription(authed: AuthedStack) -> None:  # noqa: F811
    s = authed
    query = s.channel("query")
    for user, zone, name in (("alice", "n-zone", "north-1"), ("carol", "s-zone", "south-1")):
        await _exec(s, user, commands_pb2.SetZone(id=zone, name=zone))
        await _exec(s, user, commands_pb2.SetTarget(id=name, name=name, zone_id=zone))

    # No token, or a bad one: the stream is refused.
    subs = [_sub("t", queries_pb2.AllTargets())]
    assert await _status(_open(query, subs)) is grpc.StatusCode.UNAUTHENTICATED
    assert await _status(_open(query, subs, token="Bearer nope")) is grpc.StatusCode.UNAUTHENTICATED

    # Each stream sees its own tenant's rows, sharing the Watches' per-tenant evaluations.
    bob = Frames(_open(query, subs, token=s.bearer("bob"), grouped=True))
    dave = Frames(_open(query, subs, token=s.bearer("dave"), grouped=True))
    # eve has no role: her subscription is refused on its own (the stream stays open).
    eve = Frames(_open(query, subs, token=s.bearer("eve")))
    try:
        await bob.until(lambda f: "t" in f.latest and _names(f.latest["t"]) == ["north-1"])
        await dave.until(lambda f: "t" in f.latest and _names(f.latest["t"]) == ["south-1"])
        await eve.until(lambda f: "t" in f.errors)
        assert eve.errors["t"].code == grpc.StatusCode.PERMISSION_DENIED.value[0]
        await _exec(s, "alice", commands_pb2.SetTarget(id="north-2", name="north-2"))
        await bob.until(lambda f: _names(f.latest["t"]) == ["north-1", "north-2"])
        assert _names(dave.latest["t"]) == ["south-1"]
    finally:
        for f in (bob, dave, eve):
            f.call.cancel()

    # The typed client: the same error class as a Watch gets.
    async with (
        Client(
            query_addr=f"127.0.0.1:{s.stack.query.grpc.port}", metadata=(("authorization", s.bearer("eve")),)
        ) as eve_client,
        eve_client.live() as live,
    ):
        denied = live.watch(queries_pb2.AllTargets())
        with pytest.raises(PermissionDenied):
            async with asyncio.timeout(20):
                await anext(denied)

    # The stream ends UNAUTHENTICATED when its token expires.
    ttl = 3
    expires = time.time() + ttl
    short = Frames(_open(query, subs, token=s.bearer("bob", ttl_s=ttl)))
    await short.until(lambda f: "t" in f.latest)
    assert await _status(short.call) is grpc.StatusCode.UNAUTHENTICATED
    assert time.time() - expires < END_WITHIN_S


async def _exec(s: AuthedStack, user: str, command: Message) -> None:
    async with Client(
        command_addr=f"127.0.0.1:{s.stack.command.grpc.port}",
        metadata=(("authorization", s.bearer(user)),),
    ) as c:
        await c.execute(command)
