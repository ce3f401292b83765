"""`Client`: the typed Python client of CommandBus, QueryBus and ReportBus.

    async with Client(command_addr="127.0.0.1:50051", query_addr="127.0.0.1:50052") as client:
        result = await client.execute(SetTarget(name="a"))           # CommandResult
        targets = await client.get(AllTargets(), at_least=result)   # list[Target]
        async for targets in client.watch(AllTargets()):            # list[Target], on every change
            ...

Result types come from the contract: a query's items and a report's value are
the messages its `.proto` declares with `(myko.v1.query)` / `(myko.v1.report)`,
found at run time through the descriptor pool and, for mypy, through the
`Query`/`Report` base classes the generated stubs carry (myko/contract.py).

Every failure raises a MykoError: the status a server answered with maps back
to its class in myko/status.py (`retriable` included), so callers handle a
rejection the same way wherever it happened. Services that call each other use
this client too (saga_svc -> command_svc, a command_svc follower -> its leader).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message

from myko.contract import Query, Report, query_result, report_result
from myko.entities import TYPE_URL_PREFIX
from myko.errors import ConfigError, InvalidArgument, MykoError, ServerError
from myko.keepalive import KeepalivePolicy
from myko.lifecycle import Lifecycle
from myko.server import MAX_REPLY_BYTES
from myko.status import error_from_command_error, error_from_rpc
from myko.tracing import Tracing
from myko.v1 import (
    command_pb2,
    command_pb2_grpc,
    item_pb2,
    live_pb2,
    query_pb2,
    query_pb2_grpc,
    report_pb2,
    report_pb2_grpc,
)

if TYPE_CHECKING:
    from myko.client_live import Live

T = TypeVar("T", bound=Message)
V = TypeVar("V", bound=Message)

# Read-your-writes: a Watermark, or the CommandResult whose write must be visible.
AtLeast = item_pb2.Watermark | command_pb2.CommandResult | None


def channel_options(keepalive: KeepalivePolicy | None = None) -> tuple[tuple[str, int], ...]:
    """Options for a channel to Myko's servers: their keepalive policy (myko/keepalive.py)."""
    return (
        *(keepalive or KeepalivePolicy()).client_options(),
        ("grpc.enable_http_proxy", 0),
        # A full query result as large as the servers send (gRPC's default is 4 MB:
        # AllTargets over ~20k Targets would fail RESOURCE_EXHAUSTED).
        ("grpc.max_receive_message_length", MAX_REPLY_BYTES),
        # Reconnect promptly after the server restarts.
        ("grpc.max_reconnect_backoff_ms", 2_000),
    )


CHANNEL_OPTIONS = channel_options()


class TokenSource(Protocol):
    """Gives a current access token for each call (e.g. myko.service_token.ServiceToken)."""

    async def token(self) -> str: ...


class Client(Lifecycle):
    """One channel per address given; a method whose service has no address raises ConfigError.

    `timeout_s` bounds each unary call (Execute, Get) unless the call gives its
    own; Watch streams have no deadline. `metadata` goes with every call (e.g.
    `(("authorization", "Bearer ..."),)`); `token`, when given, is asked for a
    current access token before each call (a service's own identity, renewed
    ahead of expiry) and sent as `authorization: Bearer ...`. `credentials` makes
    the channels TLS (`grpc.ssl_channel_credentials(ca)`, or myko.tls.Transport's
    for a Myko service); `("grpc.ssl_target_name_override", "query")` in
    `channel_options` verifies the server under that name when the address is not it.
    With `tracing`, Execute carries the current span as its `traceparent` (a
    saga's event, a forwarded call).
    """

    def __init__(
        self,
        *,
        command_addr: str | None = None,
        query_addr: str | None = None,
        report_addr: str | None = None,
        timeout_s: float = 30.0,
        metadata: Sequence[tuple[str, str]] = (),
        channel_options: Sequence[tuple[str, int | str]] = CHANNEL_OPTIONS,
        credentials: grpc.ChannelCredentials | None = None,
        tracing: Tracing | None = None,
        token: TokenSource | None = None,
    ) -> None:
        if command_addr is None and query_addr is None and report_addr is None:
            raise ConfigError("Client needs at least one of command_addr, query_addr, report_addr")
        self._addrs = {"command": command_addr, "query": query_addr, "report": report_addr}
        self._timeout_s = timeout_s
        self._metadata = tuple(metadata)
        self._tracing = tracing or Tracing.off()
        self._token = token
        self._channel_options = list(channel_options)
        self._credentials = credentials
        self._channels: list[grpc.aio.Channel] = []
        self._by_service: dict[str, grpc.aio.Channel] = {}
        self._execute: grpc.aio.UnaryUnaryMultiCallable[command_pb2.CommandRequest, command_pb2.CommandResult]
        self._execute_batch: grpc.aio.UnaryUnaryMultiCallable[
            command_pb2.CommandBatchRequest, command_pb2.CommandBatchResult
        ]
        self._query_get: grpc.aio.UnaryUnaryMultiCallable[query_pb2.QueryRequest, query_pb2.QueryResult]
        self._query_watch: grpc.aio.UnaryStreamMultiCallable[query_pb2.QueryRequest, query_pb2.QueryResult]
        self._report_get: grpc.aio.UnaryUnaryMultiCallable[report_pb2.ReportRequest, report_pb2.ReportResult]
        self._report_watch: grpc.aio.UnaryStreamMultiCallable[
            report_pb2.ReportRequest, report_pb2.ReportResult
        ]
        self._started = False

    @property
    def command_addr(self) -> str | None:
        return self._addrs["command"]

    async def start(self) -> None:
        if self._started:
            return
        # grpc_python_out writes no type stubs: the attributes above give the types.
        if (addr := self._addrs["command"]) is not None:
            commands = command_pb2_grpc.CommandBusStub(self._channel(addr))  # type: ignore[no-untyped-call]
            self._execute, self._execute_batch = commands.Execute, commands.ExecuteBatch
        if (addr := self._addrs["query"]) is not None:
            queries = query_pb2_grpc.QueryBusStub(self._channel(addr, "query"))  # type: ignore[no-untyped-call]
            self._query_get, self._query_watch = queries.Get, queries.Watch
        if (addr := self._addrs["report"]) is not None:
            reports = report_pb2_grpc.ReportBusStub(self._channel(addr, "report"))  # type: ignore[no-untyped-call]
            self._report_get, self._report_watch = reports.Get, reports.Watch
        self._started = True

    def _channel(self, addr: str, service: str = "") -> grpc.aio.Channel:
        if self._credentials is None:
            channel = grpc.aio.insecure_channel(addr, options=self._channel_options)
        else:
            channel = grpc.aio.secure_channel(addr, self._credentials, options=self._channel_options)
        self._channels.append(channel)
        if service:
            self._by_service[service] = channel
        return channel

    async def stop(self) -> None:
        channels, self._channels = self._channels, []
        self._by_service.clear()
        self._started = False
        for channel in channels:
            await channel.close(None)

    async def _call_metadata(self) -> tuple[tuple[str, str], ...]:
        if self._token is None:
            return self._metadata
        return (*self._metadata, ("authorization", f"Bearer {await self._token.token()}"))

    def _ready(self, service: str) -> None:
        if not self._started:
            raise ConfigError("Client not started: call start() or use `async with`")
        if self._addrs[service] is None:
            raise ConfigError(f"this Client has no {service}_addr")

    # --- commands ----------------------------------------------------------
    async def execute(
        self, command: Message, *, tx: str | None = None, timeout_s: float | None = None
    ) -> command_pb2.CommandResult:
        """Run one command. Without `tx` a new one is generated: pass your own to retry safely
        (the same tx takes effect once)."""
        return await self.execute_request(_command_request(command, tx), timeout_s=timeout_s)

    async def execute_batch(
        self,
        commands: Sequence[Message],
        *,
        txs: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> list[command_pb2.CommandResult | MykoError]:
        """Run many independent commands in one call (ExecuteBatch): per command, in order,
        its result or the error Execute would have raised (returned, not raised).

        Each is its own tx: pass `txs` (one per command) to retry safely; sending
        the same txs again answers every command that already ran with its first
        result, and runs the others. The commands run concurrently, in no order:
        one that depends on another belongs in a later call. A failure of the call
        itself (over MYKO_MAX_BATCH_COMMANDS, command_svc unavailable, ...) raises."""
        if txs is not None and len(txs) != len(commands):
            raise InvalidArgument("txs", f"{len(txs)} txs for {len(commands)} commands")
        request = command_pb2.CommandBatchRequest(
            commands=[_command_request(c, None if txs is None else txs[i]) for i, c in enumerate(commands)]
        )
        answer = await self.execute_batch_request(request, timeout_s=timeout_s)
        if len(answer.outcomes) != len(commands):
            raise ServerError(
                f"ExecuteBatch answered {len(answer.outcomes)} outcomes for {len(commands)} commands"
            )
        return [
            o.result if o.HasField("result") else error_from_command_error(o.error) for o in answer.outcomes
        ]

    async def execute_request(
        self,
        request: command_pb2.CommandRequest,
        *,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> command_pb2.CommandResult:
        """Send an already packed CommandRequest (what command_svc forwards to its leader,
        with the caller's `metadata`)."""
        self._ready("command")
        traced = self._tracing.metadata() if self._tracing.enabled else ()
        try:
            return await self._execute(
                request,
                timeout=self._timeout(timeout_s),
                metadata=(*await self._call_metadata(), *traced, *metadata),
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    async def execute_batch_request(
        self,
        request: command_pb2.CommandBatchRequest,
        *,
        timeout_s: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> command_pb2.CommandBatchResult:
        """Send an already packed CommandBatchRequest (what a command_svc follower forwards)."""
        self._ready("command")
        traced = self._tracing.metadata() if self._tracing.enabled else ()
        try:
            return await self._execute_batch(
                request,
                timeout=self._timeout(timeout_s),
                metadata=(*await self._call_metadata(), *traced, *metadata),
            )
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    # --- queries and reports -----------------------------------------------
    @overload
    def watch(self, request: Query[Any, T], *, at_least: AtLeast = None) -> AsyncGenerator[list[T], None]: ...
    @overload
    def watch(self, request: Report[Any, V], *, at_least: AtLeast = None) -> AsyncGenerator[V, None]: ...
    def watch(self, request: object, *, at_least: AtLeast = None) -> AsyncGenerator[Any, None]:
        """Every result of a query (the full array) or report (its value): now, then on each change.

        With `at_least`, the first emission already reflects that watermark
        (or that command's writes). Leaving the `async for` cancels the stream
        once the generator is dropped; `await stream.aclose()` (or
        `contextlib.aclosing`) cancels it at once."""
        message, kind, result_cls = self._resolve(request)
        if kind == "query":
            self._ready("query")
            query = query_pb2.QueryRequest(query=_pack(message), at_least=_watermark(at_least))

            async def open_query() -> grpc.aio.UnaryStreamCall[Any, query_pb2.QueryResult]:
                return self._query_watch(query, metadata=await self._call_metadata())

            return _stream(open_query, lambda r: _items(r.items, result_cls, r.query_type))
        self._ready("report")
        report = report_pb2.ReportRequest(report=_pack(message), at_least=_watermark(at_least))

        async def open_report() -> grpc.aio.UnaryStreamCall[Any, report_pb2.ReportResult]:
            return self._report_watch(report, metadata=await self._call_metadata())

        return _stream(open_report, lambda r: _unpack(r.value, result_cls, r.report_type))

    @overload
    async def get(
        self, request: Query[Any, T], *, at_least: AtLeast = None, timeout_s: float | None = None
    ) -> list[T]: ...
    @overload
    async def get(
        self, request: Report[Any, V], *, at_least: AtLeast = None, timeout_s: float | None = None
    ) -> V: ...
    async def get(self, request: object, *, at_least: AtLeast = None, timeout_s: float | None = None) -> Any:
        """The current result of a query or report, once `at_least` is visible when given."""
        message, kind, result_cls = self._resolve(request)
        timeout = self._timeout(timeout_s)
        try:
            if kind == "query":
                self._ready("query")
                q = await self._query_get(
                    query_pb2.QueryRequest(query=_pack(message), at_least=_watermark(at_least)),
                    timeout=timeout,
                    metadata=await self._call_metadata(),
                )
                return _items(q.items, result_cls, q.query_type)
            self._ready("report")
            r = await self._report_get(
                report_pb2.ReportRequest(report=_pack(message), at_least=_watermark(at_least)),
                timeout=timeout,
                metadata=await self._call_metadata(),
            )
            return _unpack(r.value, result_cls, r.report_type)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc) from None

    # --- many subscriptions over a few streams (myko/client_live.py) -------
    def live(self, *, max_per_stream: int = 256, group_results: bool = True) -> Live:
        """Many query and report subscriptions over a few LiveBus streams: `async with
        client.live() as live: sub = live.watch(AllTargets())` (myko/client_live.py)."""
        from myko.client_live import Live  # it imports this module's helpers

        return Live(self, max_per_stream=max_per_stream, group_results=group_results)

    def _live_open(self, service: str) -> grpc.aio.UnaryStreamMultiCallable[Any, Any]:
        return self._by_service[service].unary_stream(
            "/myko.v1.LiveBus/Open",
            request_serializer=live_pb2.LiveOpen.SerializeToString,
            response_deserializer=live_pb2.LiveFrame.FromString,
        )

    def _resolve(self, request: object) -> tuple[Message, str, type[Message]]:
        if not isinstance(request, Message):
            raise InvalidArgument("request", f"{type(request).__name__} is not a protobuf message")
        cls = type(request)
        if (items := query_result(cls)) is not None:
            return request, "query", items
        if (value := report_result(cls)) is not None:
            return request, "report", value
        raise InvalidArgument(
            "request", f"{cls.DESCRIPTOR.full_name} declares neither (myko.v1.query) nor (myko.v1.report)"
        )

    def _timeout(self, timeout_s: float | None) -> float:
        return self._timeout_s if timeout_s is None else timeout_s


def _command_request(command: Message, tx: str | None) -> command_pb2.CommandRequest:
    """Without `tx`, a new one."""
    # Deterministic bytes: command_svc compares a retried tx's payload with the first.
    return command_pb2.CommandRequest(tx=tx if tx is not None else str(uuid.uuid4()), command=_pack(command))


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def _watermark(at_least: AtLeast) -> item_pb2.Watermark | None:
    if isinstance(at_least, command_pb2.CommandResult):
        return at_least.visible_at
    return at_least


def _unpack(packed: any_pb2.Any, cls: type[T], what: str) -> T:
    expected = TYPE_URL_PREFIX + cls.DESCRIPTOR.full_name
    if packed.type_url != expected:
        raise ServerError(f"{what} answered a {packed.type_url!r}, not the declared {expected!r}")
    try:
        return cls.FromString(packed.value)
    except DecodeError as exc:
        raise ServerError(f"{what} answered an undecodable {cls.DESCRIPTOR.full_name}: {exc}") from None


def _items(packed: Sequence[any_pb2.Any], cls: type[T], what: str) -> list[T]:
    return [_unpack(p, cls, what) for p in packed]


R = TypeVar("R")
X = TypeVar("X")


async def _stream(
    open_call: Callable[[], Awaitable[grpc.aio.UnaryStreamCall[Any, R]]], convert: Callable[[R], X]
) -> AsyncGenerator[X, None]:
    call = await open_call()
    try:
        async for result in call:
            yield convert(result)
    except grpc.aio.AioRpcError as exc:
        raise error_from_rpc(exc) from None
    finally:
        call.cancel()
