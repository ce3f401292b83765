"""A minimal grpc-web client over aiohttp, speaking the wire format as a browser does."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

import aiohttp

BINARY = "application/grpc-web+proto"
TEXT = "application/grpc-web-text"


def frame(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


@dataclass
class Reply:
    http_status: int
    headers: Mapping[str, str]
    messages: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)

    @property
    def code(self) -> int:
        return int(self.trailers.get("grpc-status", "-1"))

    @property
    def message(self) -> str:
        return unquote(self.trailers.get("grpc-message", ""))


def parse_trailers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.decode().split("\r\n"):
        if line:
            k, _, v = line.partition(":")
            out[k.strip().lower()] = v.strip()
    return out


class FrameReader:
    """Splits a response body into frames as bytes arrive (binary or text)."""

    def __init__(self, response: aiohttp.ClientResponse, *, text: bool) -> None:
        self._response = response
        self._text = text
        self._buf = b""
        self._raw = b""

    async def _fill(self) -> bool:
        chunk = await self._response.content.readany()
        if not chunk:
            return False
        if self._text:
            self._raw += chunk
            usable = len(self._raw) - len(self._raw) % 4
            # Each response frame is its own padded base64 chunk: decode per 4-char group.
            self._buf += b"".join(base64.b64decode(self._raw[i : i + 4]) for i in range(0, usable, 4))
            self._raw = self._raw[usable:]
        else:
            self._buf += chunk
        return True

    async def frames(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            while len(self._buf) >= 5:
                flag, length = struct.unpack(">BI", self._buf[:5])
                if len(self._buf) < 5 + length:
                    break
                payload = self._buf[5 : 5 + length]
                self._buf = self._buf[5 + length :]
                yield flag, payload
            if not await self._fill():
                return


async def call(
    session: aiohttp.ClientSession,
    url: str,
    request: bytes,
    *,
    text: bool = False,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    body = frame(request)
    if text:
        body = base64.b64encode(body)
    hdrs = {"Content-Type": TEXT if text else BINARY, "X-Grpc-Web": "1", **(headers or {})}
    async with session.post(url, data=body, headers=hdrs) as resp:
        reply = Reply(resp.status, dict(resp.headers))
        async for flag, payload in FrameReader(resp, text=text).frames():
            if flag & 0x80:
                reply.trailers = parse_trailers(payload)
            else:
                reply.messages.append(payload)
        return reply
