"""Send one crafted request and reduce the answer to an Outcome.

Two transports, both without a client library's safety nets:

- gRPC straight to a service, request bytes as given (no serializer), so a
  truncated or foreign message reaches the server as it is;
- grpc-web to the gateway over a raw HTTP/1.1 connection, so the body, its
  framing and every header byte (non-ASCII, malformed grpc-timeout) are exactly
  what the case says.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import unquote

import grpc
from google.protobuf.message import DecodeError

from myko.v1 import live_pb2

from .cases import code_name

OK = 0
# A call that got no answer at all within the client's own bound.
NO_ANSWER = -1
Header = tuple[bytes, bytes]


@dataclass
class Outcome:
    """What came back: an HTTP status, then (for grpc-web and gRPC) a gRPC status."""

    http: int
    code: int | None  # None: no gRPC status (an HTTP-level answer, or none at all)
    message: str = ""
    messages: int = 0  # data messages received before we stopped reading
    # LiveBus: sub_id -> 0 for a first result, else the code of its LiveError frame.
    subs: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    first_message: bytes = b""

    def describe(self) -> str:
        code = "-" if self.code is None else code_name(self.code)
        subs = f" subs={ {k: code_name(v) for k, v in self.subs.items()} }" if self.subs else ""
        msg = self.message if len(self.message) <= 300 else self.message[:300] + f"...({len(self.message)})"
        return f"http={self.http} status={code} messages={self.messages}{subs} message={msg!r}"


# -- gRPC ---------------------------------------------------------------------------------------


async def grpc_call(
    channel: grpc.aio.Channel,
    method: str,
    request: bytes,
    *,
    streaming: bool,
    metadata: Sequence[tuple[str, str | bytes]] = (),
    timeout_s: float | None = None,
    wait_s: float = 30.0,
) -> Outcome:
    """A unary call, or a server stream read up to its first message."""
    began = time.monotonic()
    md = tuple(metadata) or None
    if not streaming:
        unary = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        ucall = unary(request, timeout=timeout_s, metadata=md)
        try:
            async with asyncio.timeout(wait_s):
                reply: bytes = await ucall
            return Outcome(200, OK, messages=1, first_message=reply, elapsed_s=time.monotonic() - began)
        except grpc.aio.AioRpcError as exc:
            return _failed(exc, began)
        except TimeoutError:
            ucall.cancel()
            return Outcome(200, NO_ANSWER, f"no answer within {wait_s}s", elapsed_s=wait_s)
    stream = channel.unary_stream(method, request_serializer=None, response_deserializer=None)
    scall = stream(request, timeout=timeout_s, metadata=md)
    try:
        async with asyncio.timeout(wait_s):
            first = await scall.read()
        if first is grpc.aio.EOF:  # type: ignore[attr-defined]
            code = await scall.code()
            return Outcome(
                200, code.value[0], await scall.details() or "", elapsed_s=time.monotonic() - began
            )
        return Outcome(
            200, OK, messages=1, first_message=cast(bytes, first), elapsed_s=time.monotonic() - began
        )
    except grpc.aio.AioRpcError as exc:
        return _failed(exc, began)
    except TimeoutError:
        return Outcome(200, NO_ANSWER, f"no first message within {wait_s}s", elapsed_s=wait_s)
    finally:
        scall.cancel()


def _failed(exc: grpc.aio.AioRpcError, began: float) -> Outcome:
    return Outcome(200, exc.code().value[0], exc.details() or "", elapsed_s=time.monotonic() - began)


# -- grpc-web over raw HTTP/1.1 -----------------------------------------------------------------


def frame(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


class _GrpcWebBody:
    """Splits a response body into grpc-web frames as it arrives (binary or text)."""

    def __init__(self, *, text: bool) -> None:
        self.text = text
        self._raw = b""
        self._buf = b""
        self.frames: list[tuple[int, bytes]] = []
        self.bad = ""

    def feed(self, chunk: bytes) -> None:
        if self.text:
            self._raw += b"".join(chunk.split())
            usable = len(self._raw) - len(self._raw) % 4
            try:
                # Each response frame is its own padded base64 chunk: decode per 4-char group.
                self._buf += b"".join(
                    base64.b64decode(self._raw[i : i + 4], validate=True) for i in range(0, usable, 4)
                )
            except binascii.Error:
                self.bad = "response is not base64"
            self._raw = self._raw[usable:]
        else:
            self._buf += chunk
        while len(self._buf) >= 5:
            flag, length = struct.unpack(">BI", self._buf[:5])
            if len(self._buf) < 5 + length:
                break
            self.frames.append((flag, self._buf[5 : 5 + length]))
            self._buf = self._buf[5 + length :]


@dataclass
class _Stop:
    """When to stop reading a grpc-web response that has not ended."""

    first_message: bool = False  # a server stream: its first message is enough
    subs: frozenset[str] = frozenset()  # LiveBus: every listed sub has a result or an error


def _trailers(block: bytes) -> dict[str, str]:
    out = {}
    for line in block.decode("utf-8", "replace").split("\r\n"):
        if line:
            k, _, v = line.partition(":")
            out[k.strip().lower()] = v.strip()
    return out


def _interpret(http: int, body: _GrpcWebBody, stop: _Stop, began: float) -> tuple[Outcome, bool]:
    """The outcome so far, and whether reading can stop."""
    out = Outcome(http, None, elapsed_s=time.monotonic() - began)
    for flag, payload in body.frames:
        if flag & 0x80:
            t = _trailers(payload)
            out.code = int(t.get("grpc-status", str(NO_ANSWER)))
            out.message = unquote(t.get("grpc-message", ""))
            return out, True
        out.messages += 1
        if out.messages == 1:
            out.first_message = payload
        if stop.subs:
            try:
                lf = live_pb2.LiveFrame.FromString(payload)
            except DecodeError:
                out.message = "undecodable LiveFrame"
                return out, True
            which = lf.WhichOneof("body")
            if lf.sub_id in stop.subs and lf.sub_id not in out.subs:
                if which == "error":
                    out.subs[lf.sub_id] = lf.error.code
                elif which in ("query", "report"):
                    out.subs[lf.sub_id] = OK
    if body.bad:
        out.message = body.bad
        return out, True
    if stop.subs and set(out.subs) >= stop.subs:
        out.code = OK  # the stream is open and every subscription answered
        return out, True
    if stop.first_message and not stop.subs and out.messages:
        out.code = OK
        return out, True
    return out, False


@dataclass
class RawHttp:
    """The HTTP status line and headers; the body was consumed by the frame parser."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes


async def http_exchange(
    port: int,
    *,
    method: bytes,
    target: bytes,
    headers: Sequence[Header],
    body: bytes,
    on_body: _GrpcWebBody | None = None,
    stop: _Stop | None = None,
    wait_s: float = 30.0,
) -> tuple[RawHttp | None, Outcome | None]:
    """One request on its own connection; reads until the answer is complete or `stop` holds."""
    began = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    head = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [k + b": " + v for k, v in headers]
    if method == b"POST":
        head.append(b"Content-Length: " + str(len(body)).encode())
    writer.write(b"\r\n".join(head) + b"\r\n\r\n")

    async def send_body() -> None:
        # The server may answer (and close) before it has read a large body: keep going
        # quietly, the answer is what the case is about.
        with contextlib.suppress(ConnectionError, OSError):
            view = memoryview(body)
            for i in range(0, len(view), 1 << 20):
                writer.write(view[i : i + (1 << 20)])
                await writer.drain()

    sender = asyncio.create_task(send_body())
    try:
        async with asyncio.timeout(wait_s):
            return await _read_reply(reader, on_body, stop or _Stop(), began)
    except TimeoutError:
        return None, Outcome(0, NO_ANSWER, f"no complete answer within {wait_s}s", elapsed_s=wait_s)
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        return None, Outcome(0, NO_ANSWER, f"connection dropped: {type(exc).__name__}")
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _read_reply(
    reader: asyncio.StreamReader, frames: _GrpcWebBody | None, stop: _Stop, began: float
) -> tuple[RawHttp, Outcome | None]:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("closed before a status line")
    status = int(status_line.split()[1])
    headers: dict[bytes, bytes] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.partition(b":")
        headers[k.strip().lower()] = v.strip()
    raw = RawHttp(status, headers, b"")
    grpc_web = frames is not None and headers.get(b"content-type", b"").startswith(b"application/grpc-web")
    collected = bytearray()

    def take(chunk: bytes) -> Outcome | None:
        if grpc_web:
            assert frames is not None
            frames.feed(chunk)
            out, done = _interpret(status, frames, stop, began)
            return out if done else None
        if len(collected) < 1 << 16:
            collected.extend(chunk[: (1 << 16) - len(collected)])
        return None

    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size_line = await reader.readline()
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            chunk = await reader.readexactly(size)
            await reader.readexactly(2)
            if (out := take(chunk)) is not None:
                return raw, out
    elif b"content-length" in headers:
        remaining = int(headers[b"content-length"])
        while remaining > 0:
            chunk = await reader.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
            if (out := take(chunk)) is not None:
                return raw, out
    else:
        while chunk := await reader.read(1 << 16):
            if (out := take(chunk)) is not None:
                return raw, out
    raw.body = bytes(collected)
    if grpc_web:
        assert frames is not None
        out, _ = _interpret(status, frames, stop, began)
        return raw, out
    return raw, None


async def grpc_web_call(
    port: int,
    path: str | bytes,
    body: bytes,
    *,
    headers: Sequence[Header],
    text: bool,
    streaming: bool = False,
    subs: Sequence[str] = (),
    wait_s: float = 30.0,
) -> Outcome:
    """POST a grpc-web body as given; the outcome is the trailer's status (or the HTTP status)."""
    target = path if isinstance(path, bytes) else path.encode()
    frames = _GrpcWebBody(text=text)
    stop = _Stop(first_message=streaming, subs=frozenset(subs))
    raw, out = await http_exchange(
        port,
        method=b"POST",
        target=target,
        headers=headers,
        body=body,
        on_body=frames,
        stop=stop,
        wait_s=wait_s,
    )
    if out is not None:
        if out.code is None and raw is not None and not out.message:
            out.message = f"response ended without a trailer after {out.messages} messages"
        return out
    assert raw is not None
    return Outcome(raw.status, None, raw.body[:20000].decode("utf-8", "replace"))


async def http_get(
    port: int, target: bytes, *, headers: Sequence[Header] = (), wait_s: float = 30.0
) -> Outcome:
    raw, out = await http_exchange(
        port, method=b"GET", target=target, headers=headers, body=b"", wait_s=wait_s
    )
    if raw is None:
        assert out is not None
        return out
    return Outcome(raw.status, None, raw.body[:20000].decode("utf-8", "replace"))
