"""The grpc-web endpoint: decodes the browser's call, forwards or serves it, frames the reply.

Every outcome is a grpc-web status: a client's mistake gets the code
docs/errors.md lists for it, a gateway bug INTERNAL "internal error" (logged
with its traceback, nothing internal sent), never an HTTP 500.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from aiohttp import web
from opentelemetry.trace import SpanKind, Status, StatusCode

from myko.authentication import Authenticator
from myko.errors import MykoError, ServerError, Unauthenticated, Unavailable, UnknownType, echo
from myko.gateway.admission import Admission, client_of
from myko.gateway.live_bus import LiveBus
from myko.gateway.metadata import Metadata, MetadataPolicy, parse_timeout
from myko.gateway.request_body import RequestBody
from myko.gateway.responder import Responder, WireMode
from myko.gateway.routes import LIVE_OPEN, PUBLIC_ROUTES, CallKind, Route
from myko.gateway.sessions import Session
from myko.gateway.status_text import upstream_details
from myko.gateway.upstreams import Upstreams
from myko.metrics.gateway import OTHER_METHOD, GatewayMetrics
from myko.settings import GatewaySettings
from myko.status import code_of
from myko.tracing import TRACEPARENT, TRACESTATE, Tracing

log = logging.getLogger(__name__)
_OK = grpc.StatusCode.OK.value[0]
_INTERNAL = grpc.StatusCode.INTERNAL.value[0]
_CANCELLED = grpc.StatusCode.CANCELLED.value[0]
# Refused before any grpc-web was spoken (HTTP 415): counted as a bad request.
_NOT_GRPC_WEB = grpc.StatusCode.INVALID_ARGUMENT.value[0]


class GrpcWebProxy:
    def __init__(
        self,
        upstreams: Upstreams,
        live_bus: LiveBus,
        admission: Admission,
        settings: GatewaySettings,
        auth: Authenticator,
        metrics: GatewayMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing or Tracing.off()
        self._upstreams = upstreams
        self._metrics = metrics
        self._live = live_bus
        self._admission = admission
        self._settings = settings
        self._auth = auth
        scope = settings.scope_headers
        if auth.enabled and "authorization" not in scope:
            # The token goes upstream with every call, and a LiveBus feed is shared
            # only by subscriptions presenting the very same token.
            scope = (*scope, "authorization")
        self._metadata = MetadataPolicy(settings.pass_headers, scope)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self._metrics is None:
            return await self._handle(request, None)
        path = request.path
        served = path in PUBLIC_ROUTES or path == LIVE_OPEN
        route = self._metrics.route(path if served else OTHER_METHOD)
        started = time.perf_counter()
        holder: list[Responder] = []
        try:
            return await self._handle(request, holder)
        finally:
            if not holder:
                code = _NOT_GRPC_WEB
            else:
                # No trailer written: the browser went away before the answer.
                code = holder[0].code if holder[0].code is not None else _CANCELLED
            route.done(code)
            kind = PUBLIC_ROUTES.get(path)
            if kind is not None and kind.kind is CallKind.UNARY:
                route.seconds.observe(time.perf_counter() - started)

    async def _handle(self, request: web.Request, holder: list[Responder] | None) -> web.StreamResponse:
        mode = WireMode.from_content_type(request.headers.get("Content-Type", ""))
        if mode is None:
            raise web.HTTPUnsupportedMediaType(
                text="expected application/grpc-web or application/grpc-web-text"
            )
        responder = Responder(request, mode, stall_timeout_s=self._settings.stall_timeout_ms / 1000)
        if holder is not None:
            holder.append(responder)
        path = request.path
        route = PUBLIC_ROUTES.get(path)
        body = RequestBody(
            request,
            mode,
            max_message_bytes=self._settings.max_message_bytes,
            max_body_bytes=self._settings.max_request_body_bytes,
            gauge=self._admission.gauge,
        )
        status: MykoError
        try:
            if route is None and path != LIVE_OPEN:
                raise UnknownType("method", path, message=f"{echo(path)} is not served here")
            # Headers first: they are cheap to check and the body may be large.
            timeout_s = parse_timeout(request.headers.get("grpc-timeout"))
            # Who calls: a bad or missing token gets UNAUTHENTICATED here, and nothing goes upstream.
            principal = await self._auth.from_header(_authorization(request))
            if route is not None:
                metadata = self._metadata.call_metadata(request.headers)
                payload = await body.read()
                return await self._forward(request, responder, path, route, payload, timeout_s, metadata)
            scope = self._metadata.scope_metadata(request.headers)
            session = self._live.open(await body.read(), scope, client_of(request), principal)
            # The session keeps only the canonical requests.
            body.release()
            return await self._serve_session(responder, session)
        except MykoError as exc:
            status = exc
        except ConnectionResetError:
            log.debug("browser went away during %s", path)
            return responder.response or web.Response(status=499)
        except Exception:
            log.exception("gateway error serving %s", path)
            status = ServerError("internal error")
        finally:
            body.release()
        try:
            return await _fail(responder, status)
        except ConnectionResetError:
            return responder.response or web.Response(status=499)

    async def _forward(
        self,
        request: web.Request,
        responder: Responder,
        path: str,
        route: Route,
        payload: bytes,
        timeout_s: float | None,
        metadata: Metadata,
    ) -> web.StreamResponse:
        upstream = route.upstream.value
        if route.kind is CallKind.UNARY:
            if not self._tracing.enabled:
                return (await self._unary(responder, route, path, payload, timeout_s, metadata))[0]
            # The browser's traceparent is the parent; upstream, this span is.
            tracer = self._tracing.tracer
            with tracer.start_as_current_span(
                f"POST {path}",
                context=self._tracing.context_from(request.headers),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "POST", "url.path": path, "rpc.system": "grpc"},
            ) as span:
                traced = tuple(kv for kv in metadata if kv[0] not in (TRACEPARENT, TRACESTATE))
                response, code = await self._unary(
                    responder, route, path, payload, timeout_s, traced + self._tracing.metadata()
                )
                span.set_attribute("rpc.grpc.status_code", code)
                if code != _OK:
                    span.set_status(Status(StatusCode.ERROR, f"grpc-status {code}"))
                return response

        ticket = self._admission.admit(client_of(request))
        stream = self._upstreams.server_stream(route.upstream, path)(
            payload, timeout=timeout_s, metadata=metadata
        )
        try:
            # The browser sees headers once the service sent its own (with the first result).
            await responder.start(await stream.initial_metadata())
            async for reply in stream:
                await responder.message(reply)
        except grpc.aio.AioRpcError as exc:
            return await responder.finish(
                _code(exc), upstream_details(upstream, exc), exc.trailing_metadata()
            )
        finally:
            # Browser gone (write failed or handler cancelled): stop the upstream call too.
            stream.cancel()
            self._admission.release(ticket)
        return await responder.finish(_OK, "", await stream.trailing_metadata())

    async def _unary(
        self,
        responder: Responder,
        route: Route,
        path: str,
        payload: bytes,
        timeout_s: float | None,
        metadata: Metadata,
    ) -> tuple[web.StreamResponse, int]:
        """Forward one unary call; the response and the grpc-status it carried."""
        call = self._upstreams.unary(route.upstream, path)(payload, timeout=timeout_s, metadata=metadata)
        try:
            reply = await call
        except grpc.aio.AioRpcError as exc:
            await responder.start(exc.initial_metadata())
            code = _code(exc)
            details = upstream_details(route.upstream.value, exc)
            return await responder.finish(code, details, exc.trailing_metadata()), code
        finally:
            call.cancel()
        await responder.start(await call.initial_metadata())
        await responder.message(reply)
        return await responder.finish(_OK, "", await call.trailing_metadata()), _OK

    async def _serve_session(self, responder: Responder, session: Session) -> web.StreamResponse:
        log.debug("live session %s opened", session.id)
        try:
            metrics = self._metrics
            async for out in session.frames():
                await responder.message(out.head, out.body)
                if metrics is not None:
                    metrics.frames.inc()
                    metrics.sent_bytes.inc(out.size)
        except asyncio.CancelledError:
            log.debug("live session %s: browser went away", session.id)
            raise
        finally:
            self._live.close(session)
        # The gateway ended the stream: a limit, or shutdown (the page should reconnect).
        raise session.ended or Unavailable("gateway is shutting down")


def _authorization(request: web.Request) -> str | None:
    values = request.headers.getall("Authorization", [])
    if len(values) > 1:
        raise Unauthenticated("more than one Authorization header")
    return values[0] if values else None


def _code(exc: grpc.aio.AioRpcError) -> int:
    return int(exc.code().value[0])


async def _fail(responder: Responder, exc: MykoError) -> web.StreamResponse:
    return await responder.finish(int(code_of(exc).value[0]), exc.message)
