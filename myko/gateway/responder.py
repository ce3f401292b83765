"""Writes one grpc-web response: headers, message frames, then the trailer frame.

Every response is HTTP 200 with the status in a trailer frame, never
"trailers-only" headers, because that is the one form every grpc-web client
(connect-web, grpc-web, improbable) reads for unary and streaming calls alike.
"""

from __future__ import annotations

import enum

from aiohttp import web

from myko.gateway.framing import encode_frame, encode_text, encode_trailers
from myko.gateway.metadata import AnyMetadata, metadata_headers, status_trailers


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


class Responder:
    def __init__(self, request: web.Request, mode: WireMode) -> None:
        self._request = request
        self._mode = mode
        self._response: web.StreamResponse | None = None

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

    async def message(self, payload: bytes) -> None:
        await self._write(encode_frame(payload))

    async def finish(
        self,
        code: int,
        message: str = "",
        trailing_metadata: AnyMetadata = None,
    ) -> web.StreamResponse:
        await self.start()
        await self._write(encode_trailers(status_trailers(code, message, trailing_metadata)))
        assert self._response is not None
        await self._response.write_eof()
        return self._response

    async def _write(self, frame: bytes) -> None:
        await self.start()
        assert self._response is not None
        await self._response.write(encode_text(frame) if self._mode is WireMode.TEXT else frame)
