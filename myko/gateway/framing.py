"""grpc-web message framing: 1 flag byte, 4-byte big-endian length, payload.

The binary form (`application/grpc-web`, `application/grpc-web+proto`) sends the
frames as they are; the text form (`application/grpc-web-text`) base64-encodes
them, possibly as several padded base64 chunks one after another. Responses end
with a trailer frame (flag bit 0x80) whose payload is HTTP/1 style
`key: value\\r\\n` lines.

Requests are decoded incrementally, chunk by chunk as the body arrives, so a
hostile body is refused at its first bad frame instead of after it was read
whole, and no single step works on more than one network chunk.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable

from myko.errors import FramingError, ResourceExhausted

DATA_FLAG = 0x00
TRAILER_FLAG = 0x80
COMPRESSED_FLAG = 0x01
HEADER = struct.Struct(">BI")
_KNOWN_FLAGS = TRAILER_FLAG | COMPRESSED_FLAG
_WHITESPACE = b" \t\r\n\x0b\x0c"
# Browsers encode a request frame as one base64 string; a body of many padded
# chunks is only a way to make the decoder loop in Python.
MAX_TEXT_CHUNKS = 16


def frame_header(length: int, *, flag: int = DATA_FLAG) -> bytes:
    return HEADER.pack(flag, length)


def encode_frame(payload: bytes, *, flag: int = DATA_FLAG) -> bytes:
    return HEADER.pack(flag, len(payload)) + payload


def encode_trailers(trailers: Iterable[tuple[str, str]]) -> bytes:
    block = "".join(f"{k}: {v}\r\n" for k, v in trailers).encode("utf-8")
    return encode_frame(block, flag=TRAILER_FLAG)


def encode_text(frame_bytes: bytes) -> bytes:
    return base64.b64encode(frame_bytes)


class Base64Decoder:
    """grpc-web-text, decoded as it arrives.

    Whitespace is ignored; a padded quad ends one base64 chunk and the next may
    follow directly, up to MAX_TEXT_CHUNKS chunks. Fewer than four pending
    characters wait for the next call.
    """

    def __init__(self) -> None:
        self._rest = b""
        self._chunks = 0

    def feed(self, chunk: bytes) -> bytes:
        data = self._rest + chunk.translate(None, _WHITESPACE)
        usable = len(data) - len(data) % 4
        self._rest = data[usable:]
        block = data[:usable]
        try:
            if b"=" not in block:
                return base64.b64decode(block, validate=True)
            parts: list[bytes] = []
            start = 0
            while start < len(block):
                pad = block.find(b"=", start)
                # The quad holding the padding ends this base64 chunk.
                end = len(block) if pad == -1 else (pad // 4 + 1) * 4
                self._chunks += pad != -1
                if self._chunks > MAX_TEXT_CHUNKS:
                    raise FramingError(
                        f"grpc-web-text body split into more than {MAX_TEXT_CHUNKS} base64 chunks"
                    )
                parts.append(base64.b64decode(block[start:end], validate=True))
                start = end
            return b"".join(parts)
        except binascii.Error:
            raise FramingError("invalid base64 in a grpc-web-text body") from None

    def finish(self) -> None:
        if self._rest:
            raise FramingError("grpc-web-text body ends inside a base64 quad")


class MessageDecoder:
    """The one request message of a unary or server-streaming call, from binary frames.

    Refuses as early as the bytes allow: a frame header declaring more than
    `max_message_bytes` (RESOURCE_EXHAUSTED) before its payload is read, a
    second message, a compressed message or an unknown flag (INVALID_ARGUMENT)
    as soon as the header is seen. An optional trailer frame after the message
    is ignored (browsers send none).
    """

    def __init__(self, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._buf = bytearray()
        self._flag: int | None = None
        self._length = 0
        self._message: bytes | None = None
        self._trailer_seen = False

    @property
    def buffered(self) -> int:
        """Bytes held for the message being read (what the caller should account for)."""
        return len(self._buf) + (len(self._message) if self._message is not None else 0)

    def feed(self, data: bytes) -> None:
        self._buf += data
        while True:
            if self._flag is None:
                if len(self._buf) < HEADER.size:
                    return
                flag, length = HEADER.unpack_from(self._buf)
                del self._buf[: HEADER.size]
                self._check_header(flag, length)
                self._flag, self._length = flag, length
            if len(self._buf) < self._length:
                return
            with memoryview(self._buf) as view:
                payload = bytes(view[: self._length])
            del self._buf[: self._length]
            if self._flag & TRAILER_FLAG:
                self._trailer_seen = True
            else:
                self._message = payload
            self._flag = None

    def finish(self) -> bytes:
        if self._flag is not None:
            raise FramingError(f"frame declares {self._length} bytes, {len(self._buf)} present")
        if self._buf:
            raise FramingError("truncated frame header")
        if self._message is None:
            raise FramingError("expected exactly one request message, got 0")
        return self._message

    def _check_header(self, flag: int, length: int) -> None:
        if flag & ~_KNOWN_FLAGS:
            raise FramingError(f"unknown frame flags 0x{flag:02x}")
        if flag & TRAILER_FLAG:
            if self._trailer_seen:
                raise FramingError("more than one trailer frame")
        elif self._message is not None or self._trailer_seen:
            raise FramingError("expected exactly one request message, got more")
        elif flag & COMPRESSED_FLAG:
            raise FramingError("compressed request messages are not supported")
        if length > self._max:
            raise ResourceExhausted(
                f"request message of {length} bytes is over the gateway's limit of {self._max} bytes"
            )
