"""A client that goes away mid-stream is a stream's normal end, never a server-side error.

A real grpc.aio server streams as fast as it can and clients leave at all points
(deadlines around the first message, cancels, closed channels): nothing is logged
as an ERROR, every stream's generator is closed (its subscriptions released), and
the method's metrics count the streams CANCELLED. (CI once logged grpc's
"ExecuteBatchError raised in core" for a write that raced a departure; the race
is rare, so this run catches it only sometimes, and the rest always.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import wrappers_pb2
from prometheus_client import CollectorRegistry

from myko.metrics.rpc import RpcMetrics
from myko.rpc import Ctx, register_service, stream_method

SERVICE = "mykotest.Flood"
STREAMS = 200


async def _client(call_stream: grpc.aio.UnaryStreamMultiCallable[bytes, bytes], n: int) -> None:
    """Ends its stream one of four ways: a deadline that passes before the first message
    (the server's first write fails), a cancel before or after some messages, or by
    leaving the channel, which closes under it."""
    if n % 4 == 0:
        slow = wrappers_pb2.StringValue(value="slow").SerializeToString()
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for _ in call_stream(slow, timeout=0.05):
                pass
        return
    call = call_stream(b"")
    if n % 4 == 1:
        await asyncio.sleep(0.001 * (n % 5))
        call.cancel()
        return
    read = 0
    async for _ in call:
        read += 1
        if read > n % 7:
            break
    if n % 4 == 2:
        call.cancel()


def grpc_done(registry: CollectorRegistry) -> float | None:
    """Streams the method's metrics counted as ended CANCELLED."""
    return registry.get_sample_value(
        "myko_grpc_server_handled_total", {"method": f"{SERVICE}/Stream", "code": "CANCELLED"}
    )


class Flood:
    def __init__(self) -> None:
        self.open = 0
        self.closed = 0

    async def stream(self, request: wrappers_pb2.StringValue, context: Ctx) -> AsyncIterator[bytes]:
        self.open += 1
        payload = wrappers_pb2.StringValue(value="x" * 2048).SerializeToString()
        try:
            # The first message takes a moment (an evaluation), and the client may be gone by then.
            # "slow" ones answer around their client's deadline, so a first write can race it.
            slow = request.value == "slow"
            await asyncio.sleep(0.04 + 0.0005 * (self.open % 40) if slow else 0.001 * (self.open % 5))
            while True:
                yield payload
                await asyncio.sleep(0)
        finally:
            self.closed += 1


async def test_clients_cancelling_mid_stream_log_no_error(caplog: pytest.LogCaptureFixture) -> None:
    flood = Flood()
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry)
    server = grpc.aio.server()
    register_service(
        server,
        SERVICE,
        {
            "Stream": stream_method(
                flood.stream, wrappers_pb2.StringValue, name=f"{SERVICE}/Stream", metrics=metrics
            )
        },
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    caplog.set_level(logging.DEBUG)
    try:
        for first in range(0, STREAMS, 20):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call_stream = channel.unary_stream(
                    f"/{SERVICE}/Stream", request_serializer=None, response_deserializer=None
                )
                await asyncio.gather(*(_client(call_stream, n) for n in range(first, first + 20)))
        for _ in range(100):
            if flood.closed == flood.open and grpc_done(registry) == flood.open:
                break
            await asyncio.sleep(0.05)
    finally:
        await server.stop(grace=None)

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors[:3]]
    # Streams cancelled before they reached the handler never opened one.
    assert STREAMS // 2 < flood.open <= STREAMS
    assert flood.closed == flood.open
    assert grpc_done(registry) == flood.open
    assert registry.get_sample_value("myko_grpc_server_streams_open", {"method": f"{SERVICE}/Stream"}) == 0
