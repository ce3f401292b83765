"""grpc-web message framing: 1 flag byte, 4-byte big-endian length, payload.

The binary form (`application/grpc-web`, `application/grpc-web+proto`) sends the
frames as they are; the text form (`application/grpc-web-text`) base64-encodes
them. Responses end with a trailer frame (flag bit 0x80) whose payload is HTTP/1
style `key: value\\r\\n` lines.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Iterable
from dataclasses import dataclass

DATA_FLAG = 0x00
TRAILER_FLAG = 0x80
COMPRESSED_FLAG = 0x01
_HEADER = struct.Struct(">BI")


class FramingError(ValueError):
    """The request body is not valid grpc-web framing."""


@dataclass(frozen=True, slots=True)
class Frame:
    flag: int
    payload: bytes

    @property
    def is_trailer(self) -> bool:
        return bool(self.flag & TRAILER_FLAG)


def encode_frame(payload: bytes, *, flag: int = DATA_FLAG) -> bytes:
    return _HEADER.pack(flag, len(payload)) + payload


def encode_trailers(trailers: Iterable[tuple[str, str]]) -> bytes:
    block = "".join(f"{k}: {v}\r\n" for k, v in trailers).encode("utf-8")
    return encode_frame(block, flag=TRAILER_FLAG)


def decode_frames(body: bytes) -> list[Frame]:
    frames: list[Frame] = []
    pos = 0
    while pos < len(body):
        if len(body) - pos < _HEADER.size:
            raise FramingError("truncated frame header")
        flag, length = _HEADER.unpack_from(body, pos)
        pos += _HEADER.size
        if len(body) - pos < length:
            raise FramingError(f"frame declares {length} bytes, {len(body) - pos} present")
        frames.append(Frame(flag, body[pos : pos + length]))
        pos += length
    return frames


def decode_text(body: bytes) -> bytes:
    """Decodes grpc-web-text; a body may be several padded base64 chunks joined."""
    data = b"".join(body.split())
    out = bytearray()
    start = 0
    try:
        while start < len(data):
            # Each chunk ends at its padding (or at the end of the body).
            end = data.find(b"=", start)
            if end == -1:
                end = len(data)
            else:
                while end < len(data) and data[end : end + 1] == b"=":
                    end += 1
            out += base64.b64decode(data[start:end], validate=True)
            start = end
    except binascii.Error as exc:
        raise FramingError(f"invalid base64 in grpc-web-text body: {exc}") from None
    return bytes(out)


def encode_text(frame_bytes: bytes) -> bytes:
    return base64.b64encode(frame_bytes)


def single_message(frames: list[Frame]) -> bytes:
    """The one request message of a unary or server-streaming call."""
    data = [f for f in frames if not f.is_trailer]
    if len(data) != 1:
        raise FramingError(f"expected exactly one request message, got {len(data)}")
    if data[0].flag & COMPRESSED_FLAG:
        raise FramingError("compressed request messages are not supported")
    return data[0].payload
