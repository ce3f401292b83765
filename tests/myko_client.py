"""Typed helpers the tests use to talk to Myko services over real gRPC."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from myko.v1 import command_pb2, item_pb2, query_pb2, report_pb2

M = TypeVar("M", bound=Message)


def pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def unpack(packed: any_pb2.Any, cls: type[M]) -> M:
    out = cls()
    if not packed.Unpack(out):
        raise AssertionError(f"expected {cls.DESCRIPTOR.full_name}, got {packed.type_url}")
    return out


def new_tx() -> str:
    return str(uuid.uuid4())


R = TypeVar("R", bound=Message)


class Stream(Generic[R]):
    """A server stream of results; `read()` raises AssertionError when it ends."""

    def __init__(self, call: Any) -> None:
        self._call = call

    async def read(self) -> R:
        result = await self._call.read()
        if result is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise AssertionError("stream ended")
        return cast(R, result)

    def cancel(self) -> None:
        self._call.cancel()


@dataclass
class Clients:
    """Stubs for the public buses (and RepoService) at the given addresses."""

    command: grpc.aio.Channel
    query: grpc.aio.Channel
    report: grpc.aio.Channel | None = None

    async def execute(
        self, command: Message, *, tx: str | None = None, timeout_s: float = 15.0
    ) -> command_pb2.CommandResult:
        return await self.execute_raw(
            command_pb2.CommandRequest(tx=tx or new_tx(), command=pack(command)), timeout_s=timeout_s
        )

    async def execute_raw(
        self, request: command_pb2.CommandRequest, *, timeout_s: float = 15.0
    ) -> command_pb2.CommandResult:
        call = self.command.unary_unary(
            "/myko.v1.CommandBus/Execute",
            request_serializer=command_pb2.CommandRequest.SerializeToString,
            response_deserializer=command_pb2.CommandResult.FromString,
        )
        result: command_pb2.CommandResult = await call(request, timeout=timeout_s)
        return result

    def watch(
        self, query: Message, *, at_least: item_pb2.Watermark | None = None
    ) -> Stream[query_pb2.QueryResult]:
        call = self.query.unary_stream(
            "/myko.v1.QueryBus/Watch",
            request_serializer=query_pb2.QueryRequest.SerializeToString,
            response_deserializer=query_pb2.QueryResult.FromString,
        )
        return Stream(call(query_pb2.QueryRequest(query=pack(query), at_least=at_least)))

    async def get(
        self, query: Message, *, at_least: item_pb2.Watermark | None = None, timeout_s: float = 15.0
    ) -> query_pb2.QueryResult:
        call = self.query.unary_unary(
            "/myko.v1.QueryBus/Get",
            request_serializer=query_pb2.QueryRequest.SerializeToString,
            response_deserializer=query_pb2.QueryResult.FromString,
        )
        result: query_pb2.QueryResult = await call(
            query_pb2.QueryRequest(query=pack(query), at_least=at_least), timeout=timeout_s
        )
        return result

    def watch_report(
        self, report: Message, *, at_least: item_pb2.Watermark | None = None
    ) -> Stream[report_pb2.ReportResult]:
        assert self.report is not None
        call = self.report.unary_stream(
            "/myko.v1.ReportBus/Watch",
            request_serializer=report_pb2.ReportRequest.SerializeToString,
            response_deserializer=report_pb2.ReportResult.FromString,
        )
        return Stream(call(report_pb2.ReportRequest(report=pack(report), at_least=at_least)))

    async def get_report(self, report: Message, *, timeout_s: float = 15.0) -> report_pb2.ReportResult:
        assert self.report is not None
        call = self.report.unary_unary(
            "/myko.v1.ReportBus/Get",
            request_serializer=report_pb2.ReportRequest.SerializeToString,
            response_deserializer=report_pb2.ReportResult.FromString,
        )
        result: report_pb2.ReportResult = await call(
            report_pb2.ReportRequest(report=pack(report)), timeout=timeout_s
        )
        return result

    async def close(self) -> None:
        for ch in (self.command, self.query, self.report):
            if ch is not None:
                await ch.close(None)


def items(result: query_pb2.QueryResult, cls: type[M]) -> list[M]:
    return [unpack(a, cls) for a in result.items]


def visible(result: command_pb2.CommandResult, watermark: item_pb2.Watermark) -> bool:
    """Read-your-writes: does a result at `watermark` reflect the command?"""
    have = {(o.topic, o.partition): o.offset for o in watermark.positions}
    return all(have.get((o.topic, o.partition), 0) >= o.offset for o in result.visible_at.positions)


async def next_matching(stream: Stream[R], predicate: Callable[[R], bool]) -> R:
    """Read emissions until `predicate(result)` holds (bound the wait with asyncio.timeout)."""
    while True:
        result = await stream.read()
        if predicate(result):
            return result
