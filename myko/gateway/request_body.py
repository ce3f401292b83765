"""Reads a grpc-web request's one message as the body arrives.

Each network chunk is decoded (base64 for grpc-web-text) and framed as soon as
it is read, so the event loop never works on more than one chunk at a time and
a hostile body is refused at its first bad frame: a body declared or grown over
GatewaySettings.max_request_body_bytes, or a frame over max_message_bytes, is
RESOURCE_EXHAUSTED; a second message is INVALID_ARGUMENT. What is buffered is
counted in the gateway's byte gauge until `release`.
"""

from __future__ import annotations

from aiohttp import web

from myko.errors import ResourceExhausted
from myko.gateway.admission import ByteGauge
from myko.gateway.framing import Base64Decoder, MessageDecoder
from myko.gateway.responder import WireMode


class RequestBody:
    def __init__(
        self,
        request: web.Request,
        mode: WireMode,
        *,
        max_message_bytes: int,
        max_body_bytes: int,
        gauge: ByteGauge,
    ) -> None:
        self._request = request
        self._mode = mode
        self._max_message = max_message_bytes
        self._max_body = max_body_bytes
        self._gauge = gauge
        self._held = 0

    async def read(self) -> bytes:
        declared = self._request.content_length
        if declared is not None and declared > self._max_body:
            raise ResourceExhausted(self._too_large(declared))
        self._gauge.check()
        frames = MessageDecoder(self._max_message)
        text = Base64Decoder() if self._mode is WireMode.TEXT else None
        received = 0
        async for chunk in self._request.content.iter_any():
            received += len(chunk)
            if received > self._max_body:
                raise ResourceExhausted(self._too_large(received))
            frames.feed(text.feed(chunk) if text is not None else chunk)
            if frames.buffered > self._held:
                self._hold(frames.buffered)
                self._gauge.check()
        if text is not None:
            text.finish()
        message = frames.finish()
        self._hold(len(message))
        return message

    def release(self) -> None:
        self._hold(0)

    def _hold(self, n: int) -> None:
        self._gauge.add(n - self._held)
        self._held = n

    def _too_large(self, size: int) -> str:
        return f"request body of {size} bytes or more is over the gateway's limit of {self._max_body} bytes"
