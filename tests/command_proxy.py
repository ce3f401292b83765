"""A byte-for-byte forwarder of CommandBus/Execute, to make command_svc appear and vanish."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import grpc


class CommandProxy:
    def __init__(self, *, port: int, upstream: str) -> None:
        self._port = port
        self._upstream = upstream
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None

    async def __aenter__(self) -> CommandProxy:
        self._channel = grpc.aio.insecure_channel(self._upstream)
        forward = self._channel.unary_unary(
            "/myko.v1.CommandBus/Execute", request_serializer=None, response_deserializer=None
        )

        async def execute(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                reply: bytes = await forward(request)
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
            return reply

        handler = grpc.method_handlers_generic_handler(
            "myko.v1.CommandBus", {"Execute": grpc.unary_unary_rpc_method_handler(execute)}
        )
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((handler,))
        self._server.add_insecure_port(f"127.0.0.1:{self._port}")
        await self._server.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            await self._server.stop(0)
        if self._channel is not None:
            await self._channel.close(None)
