"""Writes one grpc-web response: headers, message frames, then the trailer frame.

Every response is HTTP 200 with the status in a trailer frame, never
"trailers-only" headers, because that is the one form every grpc-web client
(connect-web, grpc-web, improbable) reads for unary and streaming calls alike.

A write that makes no progress for `stall_timeout_s` (the page stopped reading)
drops the connection: what it held is freed instead of waiting for TCP to give up.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging

from aiohttp import web

from myko.gateway.framing import encode_text, encode_trailers, frame_header
from myko.gateway.metadata import AnyMetadata, metadata_headers, status_trailers

log = logging.getLogger(__name__)
# Below this a frame's header and body are joined into one write; above, the body
# (a shared result) goes out as it is rather than copied.
_JOIN_BELOW = 64 * 1024


class WireMode(enum.Enum):
    BINARY = "application/grpc-web+proto"
    TEXT = "application/grpc-web-text+proto"

    @classmethod
    def from_content_type(cls, content_type: str) -> WireMode | None:
        base = content_type.split(";", 1)[0].strip().lower()
        if base in ("application/grpc-web", "application/grpc-web+proto"):
            return cls.BINARY
        if base in ("application/grpc-web-text", "application/grpc-web-text+proto"):
            return cls.TEXT
        return None


class StalledReader(ConnectionResetError):
    """The peer accepted nothing for the stall timeout; the connection was dropped."""


class Responder:
    def __init__(self, request: web.Request, mode: WireMode, *, stall_timeout_s: float) -> None:
        self._request = request
        self._mode = mode
        self._stall_timeout_s = stall_timeout_s
        self._response: web.StreamResponse | None = None
        # The status sent in the trailer, once finished (metrics).
        self.code: int | None = None

    @property
    def response(self) -> web.StreamResponse | None:
        return self._response

    async def start(self, initial_metadata: AnyMetadata = None) -> None:
        if self._response is not None:
            return
        response = web.StreamResponse(status=200)
        response.content_type = self._mode.value
        # Proxies must not buffer a live stream.
        response.headers["Cache-Control"] = "no-cache, no-store"
        response.headers["X-Accel-Buffering"] = "no"
        for key, value in metadata_headers(initial_metadata):
            if key.lower() not in ("content-type", "content-length"):
                response.headers.add(key, value)
        self._response = response
        await response.prepare(self._request)

    async def message(self, payload: bytes, body: bytes = b"") -> None:
        """One message frame whose payload is `payload` followed by `body` (not copied when large)."""
        header = frame_header(len(payload) + len(body))
        if self._mode is WireMode.TEXT:
            # One padded base64 chunk per frame: the form every grpc-web-text client decodes.
            await self._write(base64.b64encode(b"".join((header, payload, body))))
        elif len(body) < _JOIN_BELOW:
            await self._write(b"".join((header, payload, body)))
        else:
            await self._write(header + payload)
            await self._write(body)

    async def finish(
        self,
        code: int,
        message: str = "",
        trailing_metadata: AnyMetadata = None,
    ) -> web.StreamResponse:
        await self.start()
        self.code = code
        trailers = encode_trailers(status_trailers(code, message, trailing_metadata))
        await self._write(encode_text(trailers) if self._mode is WireMode.TEXT else trailers)
        assert self._response is not None
        await self._response.write_eof()
        return self._response

    async def _write(self, data: bytes) -> None:
        await self.start()
        assert self._response is not None
        try:
            async with asyncio.timeout(self._stall_timeout_s):
                await self._response.write(data)
        except TimeoutError:
            transport = self._request.transport
            if transport is not None:
                transport.abort()
            log.info("dropped a connection whose reader stalled for %.1f s", self._stall_timeout_s)
            raise StalledReader("reader stalled") from None
