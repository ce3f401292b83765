"""The grpc-web endpoint: decodes the browser's call, forwards or serves it, frames the reply."""

from __future__ import annotations

import asyncio
import logging

import grpc
from aiohttp import web

from myko.gateway.framing import FramingError, decode_frames, decode_text, single_message
from myko.gateway.live_bus import LiveBus
from myko.gateway.metadata import Metadata, MetadataError, parse_timeout, request_metadata
from myko.gateway.responder import Responder, WireMode
from myko.gateway.routes import LIVE_OPEN, PUBLIC_ROUTES, CallKind, Route
from myko.gateway.status import StatusError
from myko.gateway.upstreams import Upstreams

log = logging.getLogger(__name__)
_OK = grpc.StatusCode.OK.value[0]


class GrpcWebProxy:
    def __init__(self, upstreams: Upstreams, live_bus: LiveBus) -> None:
        self._upstreams = upstreams
        self._live = live_bus

    async def handle(self, request: web.Request) -> web.StreamResponse:
        mode = WireMode.from_content_type(request.headers.get("Content-Type", ""))
        if mode is None:
            raise web.HTTPUnsupportedMediaType(
                text="expected application/grpc-web or application/grpc-web-text"
            )
        responder = Responder(request, mode)
        path = request.path
        route = PUBLIC_ROUTES.get(path)
        if route is None and path != LIVE_OPEN:
            return await _fail(
                responder, StatusError(grpc.StatusCode.UNIMPLEMENTED, f"{path} is not served here")
            )
        try:
            body = await request.read()
            payload = single_message(decode_frames(decode_text(body) if mode is WireMode.TEXT else body))
            timeout_s = parse_timeout(request.headers.get("grpc-timeout"))
            metadata = request_metadata(request.headers)
            if route is not None:
                return await self._forward(responder, path, route, payload, timeout_s, metadata)
            return await self._serve_open(responder, payload, metadata)
        except (FramingError, MetadataError) as exc:
            return await _fail(responder, StatusError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)))
        except StatusError as exc:
            return await _fail(responder, exc)
        except ConnectionResetError:
            log.debug("browser went away during %s", path)
            return responder.response or web.Response(status=499)

    async def _forward(
        self,
        responder: Responder,
        path: str,
        route: Route,
        payload: bytes,
        timeout_s: float | None,
        metadata: Metadata,
    ) -> web.StreamResponse:
        if route.kind is CallKind.UNARY:
            call = self._upstreams.unary(route.upstream, path)(payload, timeout=timeout_s, metadata=metadata)
            try:
                reply = await call
            except grpc.aio.AioRpcError as exc:
                await responder.start(exc.initial_metadata())
                return await responder.finish(_code(exc), exc.details() or "", exc.trailing_metadata())
            finally:
                call.cancel()
            await responder.start(await call.initial_metadata())
            await responder.message(reply)
            return await responder.finish(_OK, "", await call.trailing_metadata())

        stream = self._upstreams.server_stream(route.upstream, path)(
            payload, timeout=timeout_s, metadata=metadata
        )
        try:
            # The browser sees headers once the service sent its own (with the first result).
            await responder.start(await stream.initial_metadata())
            async for reply in stream:
                await responder.message(reply)
        except grpc.aio.AioRpcError as exc:
            return await responder.finish(_code(exc), exc.details() or "", exc.trailing_metadata())
        finally:
            # Browser gone (write failed or handler cancelled): stop the upstream call too.
            stream.cancel()
        return await responder.finish(_OK, "", await stream.trailing_metadata())

    async def _serve_open(
        self, responder: Responder, payload: bytes, metadata: Metadata
    ) -> web.StreamResponse:
        session = self._live.open(payload, metadata)
        log.debug("live session %s opened", session.id)
        try:
            async for frame in session.frames():
                await responder.message(frame)
        except asyncio.CancelledError:
            log.debug("live session %s: browser went away", session.id)
            raise
        finally:
            self._live.close(session)
        # Only a gateway shutdown ends a session from this side: the page should reconnect.
        return await responder.finish(grpc.StatusCode.UNAVAILABLE.value[0], "gateway is shutting down")


def _code(exc: grpc.aio.AioRpcError) -> int:
    return int(exc.code().value[0])


async def _fail(responder: Responder, exc: StatusError) -> web.StreamResponse:
    return await responder.finish(exc.number, exc.message)
