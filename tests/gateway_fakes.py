"""Stand-ins for the public buses, served by a real grpc.aio server, for gateway tests.

They implement QueryBus, ReportBus, CommandBus and RepoService with the generated
stubs; the gateway only forwards bytes, so what matters is what they record
(calls, metadata, deadlines, cancellations) and that they can emit on demand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from targets.v1 import queries_pb2

from myko.v1 import (
    command_pb2,
    command_pb2_grpc,
    item_pb2,
    query_pb2,
    query_pb2_grpc,
    repo_pb2,
    repo_pb2_grpc,
    report_pb2,
    report_pb2_grpc,
)

Ctx = grpc.aio.ServicerContext[Any, Any]
# targets.v1.Big queries answer with a result this large (stalled-reader memory tests).
BIG_RESULT_BYTES = 1024 * 1024


@dataclass
class Record:
    """What the fakes saw."""

    watch_calls: int = 0
    active_watches: int = 0
    cancelled_watches: int = 0
    repo_calls: int = 0
    metadata: list[dict[str, str | bytes]] = field(default_factory=list)
    # Each Watch request as the backend received it.
    watch_requests: list[bytes] = field(default_factory=list)
    time_remaining: list[float | None] = field(default_factory=list)


class Emitter:
    """Versioned value every open Watch re-emits when it changes."""

    def __init__(self) -> None:
        self.version = 1
        self._changed = asyncio.Condition()

    async def bump(self) -> None:
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def wait_past(self, version: int) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > version)
            return self.version


def _any(msg: queries_pb2.AllTargets | queries_pb2.TargetById) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


class FakeQueryBus(query_pb2_grpc.QueryBusServicer):
    def __init__(self, record: Record, emitter: Emitter) -> None:
        self.record = record
        self.emitter = emitter

    def _result(self, request: query_pb2.QueryRequest, seq: int) -> query_pb2.QueryResult:
        wm = item_pb2.Watermark(positions=[item_pb2.Offset(topic="t", partition=0, offset=seq)])
        item = _any(queries_pb2.TargetById(id=f"v{seq}"))
        if request.query.TypeName() == "targets.v1.Big":
            item = any_pb2.Any(
                type_url="type.googleapis.com/test.Blob", value=bytes([seq % 256]) * BIG_RESULT_BYTES
            )
        return query_pb2.QueryResult(
            query_type=request.query.TypeName(),
            items=[item],
            watermark=wm,
            seq=seq,
        )

    async def _check(self, request: query_pb2.QueryRequest, context: Ctx) -> None:
        self.record.metadata.append(dict(context.invocation_metadata() or ()))
        self.record.time_remaining.append(context.time_remaining())
        if request.query.TypeName().startswith("targets.v1.Nope"):
            # Echoes the client's type name whole, as a careless service might.
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"query: unknown type {request.query.TypeName()}"
            )
        if request.query.TypeName() == "targets.v1.Slow":
            await asyncio.sleep(5)

    async def Get(self, request: query_pb2.QueryRequest, context: Ctx) -> query_pb2.QueryResult:
        await self._check(request, context)
        return self._result(request, self.emitter.version)

    async def Watch(
        self, request: query_pb2.QueryRequest, context: Ctx
    ) -> AsyncIterator[query_pb2.QueryResult]:
        self.record.watch_calls += 1
        self.record.watch_requests.append(request.SerializeToString())
        await self._check(request, context)
        self.record.active_watches += 1
        try:
            version = self.emitter.version
            yield self._result(request, version)
            while True:
                version = await self.emitter.wait_past(version)
                yield self._result(request, version)
        except asyncio.CancelledError:
            self.record.cancelled_watches += 1
            raise
        finally:
            self.record.active_watches -= 1


class FakeReportBus(report_pb2_grpc.ReportBusServicer):
    def __init__(self, emitter: Emitter) -> None:
        self.emitter = emitter

    async def Watch(
        self, request: report_pb2.ReportRequest, context: Ctx
    ) -> AsyncIterator[report_pb2.ReportResult]:
        version = self.emitter.version
        while True:
            yield report_pb2.ReportResult(report_type=request.report.TypeName(), seq=version)
            version = await self.emitter.wait_past(version)


class FakeCommandBus(command_pb2_grpc.CommandBusServicer):
    def __init__(self, record: Record) -> None:
        self.record = record

    async def Execute(self, request: command_pb2.CommandRequest, context: Ctx) -> command_pb2.CommandResult:
        md = dict(context.invocation_metadata() or ())
        self.record.metadata.append(md)
        self.record.time_remaining.append(context.time_remaining())
        if not request.tx:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tx: must be a UUID (ünïcode: ok)")
        await context.send_initial_metadata((("x-served-by", "fake-command"),))
        context.set_trailing_metadata((("x-tx-echo", request.tx), ("x-trace-bin", b"\x00\x01\xff")))
        return command_pb2.CommandResult(tx=request.tx, command_type=request.command.TypeName())


class FakeRepo(repo_pb2_grpc.RepoServiceServicer):
    def __init__(self, record: Record) -> None:
        self.record = record

    async def Get(self, request: repo_pb2.RepoGetRequest, context: Ctx) -> repo_pb2.RepoGetResponse:
        self.record.repo_calls += 1
        return repo_pb2.RepoGetResponse()


@dataclass
class FakeBackend:
    server: grpc.aio.Server
    addr: str
    record: Record
    emitter: Emitter


async def start_fake_backend() -> FakeBackend:
    """One server with every bus (the gateway is pointed at it for all three)."""
    record, emitter = Record(), Emitter()
    server = grpc.aio.server()
    query_pb2_grpc.add_QueryBusServicer_to_server(FakeQueryBus(record, emitter), server)  # type: ignore[no-untyped-call]
    report_pb2_grpc.add_ReportBusServicer_to_server(FakeReportBus(emitter), server)  # type: ignore[no-untyped-call]
    command_pb2_grpc.add_CommandBusServicer_to_server(FakeCommandBus(record), server)  # type: ignore[no-untyped-call]
    repo_pb2_grpc.add_RepoServiceServicer_to_server(FakeRepo(record), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return FakeBackend(server=server, addr=f"127.0.0.1:{port}", record=record, emitter=emitter)
