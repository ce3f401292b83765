"""LiveBus frames as bytes: a small per-frame head followed by a shared result's bytes.

A result is serialised once (by the evaluation, or as it arrived from
upstream in the gateway) and every frame that carries it is a head naming the
subscription(s) plus those same bytes, never a re-encoded copy: an embedded
message is encoded exactly like a bytes field, so the head ends with the
query/report field tag and the result's length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from myko.live_kind import LiveKind
from myko.v1 import live_pb2

# LiveFrame.query = 3, LiveFrame.report = 4.
_FRAME_FIELD = {LiveKind.QUERY: 3, LiveKind.REPORT: 4}
_SUB_ID_TAG = b"\x0a"  # LiveFrame.sub_id = 1, length-delimited
_MORE_SUB_IDS_TAG = b"\x3a"  # LiveFrame.more_sub_ids = 7, length-delimited


class Counted(Protocol):
    """A result held for a stream (the gateway counts the bytes it holds, gateway/feeds.py)."""

    @property
    def data(self) -> bytes: ...


Result = bytes | Counted


def result_bytes(result: Result) -> bytes:
    return result if isinstance(result, bytes) else result.data


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A LiveFrame to send: `head` then the shared result's bytes (if any)."""

    head: bytes
    result: Result | None = None

    @property
    def body(self) -> bytes:
        return b"" if self.result is None else result_bytes(self.result)

    @property
    def size(self) -> int:
        return len(self.head) + len(self.body)

    def joined(self) -> bytes:
        """The whole frame as one message (gRPC writes one bytes object per message)."""
        return self.head + self.body if self.result is not None else self.head


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string_field(tag: bytes, value: str) -> bytes:
    raw = value.encode()
    return tag + varint(len(raw)) + raw


def result_prefix(sub_ids: Sequence[str], kind: LiveKind) -> bytes:
    """A LiveFrame up to a result's length: sub_id, more_sub_ids, then the result's field tag.

    Field order does not matter to a protobuf parser; the result goes last so its
    bytes follow the head unchanged. The head is this prefix + varint(length)."""
    parts = [_string_field(_SUB_ID_TAG, sub_ids[0])]
    parts.extend(_string_field(_MORE_SUB_IDS_TAG, more) for more in sub_ids[1:])
    parts.append(varint((_FRAME_FIELD[kind] << 3) | 2))
    return b"".join(parts)


def error_frame(sub_id: str, code: grpc.StatusCode, message: str) -> Outgoing:
    """`message` as the caller may see it (bounded by whoever produced it)."""
    err = live_pb2.LiveError(code=int(code.value[0]), message=message)
    return Outgoing(live_pb2.LiveFrame(sub_id=sub_id, error=err).SerializeToString())


HEARTBEAT = Outgoing(live_pb2.LiveFrame(heartbeat=live_pb2.LiveHeartbeat()).SerializeToString())


def opened_frame(heartbeat_s: float) -> Outgoing:
    opened = live_pb2.LiveOpened(heartbeat_interval_ms=int(heartbeat_s * 1000))
    return Outgoing(live_pb2.LiveFrame(opened=opened).SerializeToString())
