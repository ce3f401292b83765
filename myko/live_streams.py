"""myko.v1.LiveBus/Open in query_svc and report_svc: many subscriptions over one stream.

The browser's multiplexing (the gateway's LiveBus) for internal callers, served
where the evaluations live: each subscription joins the service's shared
evaluation (myko/live.py) with a sink that hands its payload to the stream's
session (myko/live_session.py, the gateway's too). A stream opened with
`group_results` gets one frame per evaluation and change however many of its
subscriptions share it, which is what makes fan-out cheap: the per-subscriber
cost of a change was gRPC's per-stream write (docs/benchmarks.md).

The same contract as the gateway's LiveBus: the token is checked once per
stream and the stream ends UNAUTHENTICATED when it expires or is revoked
(myko/stream_guard.py); each subscription is checked against its type's policy
and scoped by its scope key (myko/policy.py) on its own, and one that fails gets
its LiveError while the others go on. Bounds: subscriptions per stream and per
process, streams per process (MYKO_MAX_STREAMS, apart from Watch streams), and
bytes waiting per stream (docs/configuration.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc

from myko import catalogue
from myko.authentication import Authenticator
from myko.errors import ResourceExhausted, Unavailable, UnknownType
from myko.live import Subscription
from myko.live_bus import LiveBus
from myko.live_frames import error_frame, result_prefix
from myko.live_kind import LiveKind
from myko.live_open import kind_of, parse_live_open
from myko.live_session import Session
from myko.metrics.rpc import RpcMetrics
from myko.principal import Principal
from myko.rpc import Ctx, register_service
from myko.settings import LiveSettings
from myko.status import status_of, streaming
from myko.v1 import live_pb2

log = logging.getLogger(__name__)

_WHERE = f"{catalogue.LIVE_BUS}/Open"


class _SubscriptionSink:
    """One subscription's end of an evaluation: payloads and its error go to the session."""

    __slots__ = ("_ended", "_kind", "_session", "_sub_id")

    def __init__(self, session: Session, sub_id: str, kind: LiveKind) -> None:
        self._session = session
        self._sub_id = sub_id
        self._kind = kind
        self._ended = False

    def put(self, payload: bytes) -> None:
        if not self._ended:
            self._session.deliver_result(self._sub_id, self._kind, payload)

    def fail(self, exc: BaseException) -> None:
        if self._ended:
            return
        self._ended = True
        code, message = status_of(exc, f"{_WHERE} subscription")
        self._session.deliver(self._sub_id, error_frame(self._sub_id, code, message))


class _GroupSink:
    """A grouped stream's subscriptions to one request: one frame naming them all per change.

    Subscriptions of one stream share its principal, so the same request means the
    same evaluation (type, parameters and scope key): opened once for all of them,
    each change costs this stream one put and one frame, not one per subscription."""

    __slots__ = ("_ended", "_prefix", "_session", "_sub_ids")

    def __init__(self, session: Session, sub_ids: list[str], kind: LiveKind) -> None:
        self._session = session
        self._sub_ids = sub_ids
        self._prefix = result_prefix(sub_ids, kind)
        self._ended = False

    def put(self, payload: bytes) -> None:
        if not self._ended:
            self._session.deliver_frame(self._sub_ids[0], self._prefix, payload)

    def fail(self, exc: BaseException) -> None:
        if self._ended:
            return
        self._ended = True
        code, message = status_of(exc, f"{_WHERE} subscription")
        for sub_id in self._sub_ids:
            self._session.deliver(sub_id, error_frame(sub_id, code, message))


Sink = _SubscriptionSink | _GroupSink


class LiveStreams:
    """LiveBus/Open over one service's live bus (its kind: queries or reports)."""

    def __init__(self, bus: LiveBus, auth: Authenticator, settings: LiveSettings) -> None:
        self._bus = bus
        self._auth = auth
        self._settings = settings
        self.streams = 0
        self.subscriptions = 0

    def _admit(self, subscriptions: int) -> None:
        s = self._settings
        if self.streams >= s.max_streams:
            raise ResourceExhausted(
                f"this {self._bus.kind.value} service has {self.streams} open LiveBus streams, its limit"
                " (MYKO_MAX_STREAMS); retry later or on another replica"
            )
        if self.subscriptions + subscriptions > s.max_live_subscriptions:
            raise ResourceExhausted(
                f"this {self._bus.kind.value} service serves its limit of {s.max_live_subscriptions}"
                " LiveBus subscriptions (MYKO_MAX_LIVE_SUBSCRIPTIONS); retry later or on another replica"
            )

    async def open(self, payload: bytes, context: Ctx) -> AsyncIterator[bytes]:
        principal = await self._auth.from_metadata(context.invocation_metadata())
        req = parse_live_open(payload, self._settings.max_subscriptions_per_stream)
        count = len(req.subscriptions)
        self._admit(count)
        self.streams += 1
        self.subscriptions += count
        session = Session(
            secrets.token_urlsafe(12),
            heartbeat_s=self._settings.live_heartbeat_ms / 1000,
            max_unsent_bytes=self._settings.max_stream_unsent_bytes,
            on_fail=lambda _: None,
            grouped=req.group_results,
        )
        opened: list[Subscription] = []
        opening: asyncio.Task[None] | None = None
        try:
            with self._bus.guard.watching(principal, session.fail):
                # In a task, so `opened` goes out at once while a fenced subscription waits.
                opening = asyncio.create_task(self._open_all(req, context, principal, session, opened))
                async for out in session.frames():
                    yield out.joined()
            # The service ended the stream: the token expired, a limit, or shutdown.
            raise session.ended or Unavailable(f"{self._bus.kind.value} service is shutting down")
        finally:
            session.close()
            if opening is not None:
                opening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await opening
            for sub in opened:
                sub.close()
            self.streams -= 1
            self.subscriptions -= count

    async def _open_all(
        self,
        req: live_pb2.LiveOpen,
        context: Ctx,
        principal: Principal,
        session: Session,
        opened: list[Subscription],
    ) -> None:
        # (representative, the sub_ids it stands for), in the order of the request.
        groups: dict[object, tuple[live_pb2.LiveSubscription, list[str]]] = {}
        for sub in req.subscriptions:
            request = sub.query if sub.WhichOneof("request") == "query" else sub.report
            # Grouped by the request's bytes as sent: a client that encodes one request two
            # ways gets two evaluations' worth of frames, never a wrong result.
            key: object = (
                (sub.WhichOneof("request"), request.SerializeToString(deterministic=True))
                if req.group_results
                else sub.sub_id
            )
            groups.setdefault(key, (sub, []))[1].append(sub.sub_id)
        fenced = []
        for sub, sub_ids in groups.values():
            kind = kind_of(sub)
            sink: Sink = (
                _GroupSink(session, sub_ids, kind)
                if len(sub_ids) > 1
                else _SubscriptionSink(session, sub_ids[0], kind)
            )
            request = sub.query if kind is LiveKind.QUERY else sub.report
            if request.at_least.positions:
                fenced.append(self._open_one(sub, sink, context, principal, session, opened))
            else:
                # Never suspends without a fence: subscriptions open in their order.
                await self._open_one(sub, sink, context, principal, session, opened)
        await asyncio.gather(*fenced)

    async def _open_one(
        self,
        sub: live_pb2.LiveSubscription,
        sink: Sink,
        context: Ctx,
        principal: Principal,
        session: Session,
        opened: list[Subscription],
    ) -> None:
        kind = kind_of(sub)
        if kind is not self._bus.kind:
            sink.fail(
                UnknownType(
                    "", "", message=f"{kind.value} subscriptions are served by {kind.value}_svc, not here"
                )
            )
            return
        request: Any = sub.query if kind is LiveKind.QUERY else sub.report
        try:
            subscription = await self._bus.open(
                getattr(request, kind.request_field), request.at_least, context, principal, sink
            )
        except Exception as exc:
            sink.fail(exc)
            return
        if session.closed:
            subscription.close()
        else:
            opened.append(subscription)


def register_live_streams(server: grpc.aio.Server, streams: LiveStreams, metrics: RpcMetrics | None) -> None:
    """Serve myko.v1.LiveBus. The request stays bytes: the subscription count is checked
    before it is decoded (myko/live_open.py)."""

    def open_stream(payload: bytes, context: Ctx) -> AsyncIterator[bytes]:
        return streams.open(payload, context)

    handler = grpc.unary_stream_rpc_method_handler(
        streaming(
            open_stream,
            name=_WHERE,
            metrics=metrics.method(_WHERE) if metrics is not None else None,
        ),
        request_deserializer=lambda data: data,
        response_serializer=lambda data: data,
    )
    register_service(server, catalogue.LIVE_BUS, {"Open": handler})
