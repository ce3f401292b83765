"""The benchmark's gRPC client: Execute, and Watch streams that timestamp every emission."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from myko.v1 import command_pb2, item_pb2, query_pb2

Position = tuple[str, int]
Needed = Mapping[Position, int]

_EXECUTE = "/myko.v1.CommandBus/Execute"
_WATCH = "/myko.v1.QueryBus/Watch"
# No proxy on loopback; large enough for a big AllTargets array.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def needed_positions(watermark: item_pb2.Watermark) -> dict[Position, int]:
    return {(o.topic, o.partition): o.offset for o in watermark.positions}


def covers(have: Needed, needed: Needed) -> bool:
    return all(have.get(tp, 0) >= pos for tp, pos in needed.items())


class CommandClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._call = channel.unary_unary(
            _EXECUTE,
            request_serializer=command_pb2.CommandRequest.SerializeToString,
            response_deserializer=command_pb2.CommandResult.FromString,
        )

    @staticmethod
    def request(command: Message) -> command_pb2.CommandRequest:
        """What `execute` sends for `command`: a fresh tx each time."""
        return command_pb2.CommandRequest(tx=str(uuid.uuid4()), command=pack(command))

    async def execute(self, command: Message, *, timeout_s: float = 30.0) -> command_pb2.CommandResult:
        request = self.request(command)
        result: command_pb2.CommandResult = await self._call(request, timeout=timeout_s)
        return result


@dataclass(frozen=True)
class Emission:
    received_s: float  # time.perf_counter() when the client had it
    watermark: dict[Position, int]
    result: query_pb2.QueryResult


class WatchStream:
    """One open QueryBus/Watch; a reader task logs each emission with its arrival time."""

    def __init__(self, channel: grpc.aio.Channel, query: Message) -> None:
        call = channel.unary_stream(
            _WATCH,
            request_serializer=query_pb2.QueryRequest.SerializeToString,
            response_deserializer=query_pb2.QueryResult.FromString,
        )
        self._call = call(query_pb2.QueryRequest(query=pack(query)))
        self.emissions: list[Emission] = []
        self._new = asyncio.Event()
        self._error: BaseException | None = None
        self._task = asyncio.create_task(self._read(), name="bench-watch")

    async def _read(self) -> None:
        try:
            async for result in self._call:
                now = time.perf_counter()
                self.emissions.append(Emission(now, needed_positions(result.watermark), result))
                self._new.set()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._error = exc
            self._new.set()

    async def first_covering(self, needed: Needed, *, start: int = 0) -> int:
        """Index of the first emission at or after `start` whose watermark covers `needed`."""
        i = start
        while True:
            while i < len(self.emissions):
                if covers(self.emissions[i].watermark, needed):
                    return i
                i += 1
            if self._error is not None:
                raise RuntimeError(f"watch stream failed: {self._error}")
            self._new.clear()
            await self._new.wait()

    async def wait_emissions(self, count: int) -> None:
        while len(self.emissions) < count:
            if self._error is not None:
                raise RuntimeError(f"watch stream failed: {self._error}")
            self._new.clear()
            await self._new.wait()

    async def close(self) -> None:
        self._call.cancel()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
