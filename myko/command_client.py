"""A client of CommandBus/Execute, for services that send commands (saga_svc)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from myko.lifecycle import Lifecycle
from myko.v1 import command_pb2


class CommandFailed(Exception):
    """Execute answered with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class CommandClient(Lifecycle):
    def __init__(self, *, command_addr: str, timeout_s: float = 30.0) -> None:
        self._addr = command_addr
        self._timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._call: grpc.aio.UnaryUnaryMultiCallable[command_pb2.CommandRequest, command_pb2.CommandResult]

    async def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(
            self._addr,
            options=[
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.enable_http_proxy", 0),
                # Reconnect promptly after a command_svc restart.
                ("grpc.max_reconnect_backoff_ms", 2_000),
            ],
        )
        self._call = self._channel.unary_unary(
            "/myko.v1.CommandBus/Execute",
            request_serializer=command_pb2.CommandRequest.SerializeToString,
            response_deserializer=command_pb2.CommandResult.FromString,
        )

    async def execute(self, command: Message, *, tx: str) -> command_pb2.CommandResult:
        """Send one command; CommandFailed carries the status code on failure."""
        if self._channel is None:
            raise RuntimeError("CommandClient not started")
        packed = any_pb2.Any()
        # Deterministic bytes: command_svc compares a retried tx's payload with the first.
        packed.Pack(command, deterministic=True)
        try:
            result: command_pb2.CommandResult = await self._call(
                command_pb2.CommandRequest(tx=tx, command=packed), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise CommandFailed(exc.code(), exc.details() or "") from None
        return result

    async def stop(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None
