"""Sends cases (and fuzzed requests) to the stack, and states what every answer must satisfy."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import grpc

from .cases import UPSTREAM_OF, Case, Endpoint, Request, Via, World
from .stack import HostileStack
from .wire import NO_ANSWER, Outcome, frame, grpc_call, grpc_web_call, http_get

T = TypeVar("T")

INTERNAL = grpc.StatusCode.INTERNAL.value[0]
UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
# docs/errors.md: every status message is at most 1,024 characters, and client
# text quoted in one is cut to 80. An echo is any run of the request's bytes found
# in the answer; ECHO_LIMIT leaves room for quotes and escapes around 80.
MAX_MESSAGE_CHARS = 1024
ECHO_LIMIT = 127
# A plain-HTTP refusal by aiohttp's own parser (400 for a malformed request line)
# quotes the offending line; aiohttp bounds that line at 8,190 bytes.
HTTP_ECHO_LIMIT = 8190
_WINDOW = (ECHO_LIMIT + 1) // 2

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.enable_http_proxy", 0),
]
BINARY_CT = b"application/grpc-web+proto"
TEXT_CT = b"application/grpc-web-text"


class Driver:
    """An event loop of its own (the test thread's), with a channel to each service."""

    def __init__(self, stack: HostileStack, world: World) -> None:
        self.stack = stack
        self.world = world
        self.loop = asyncio.new_event_loop()
        self.channels: dict[str, grpc.aio.Channel] = self.run(self._open())
        self.gateway_port = stack.port("gateway")

    async def _open(self) -> dict[str, grpc.aio.Channel]:
        return {
            name: grpc.aio.insecure_channel(self.stack.addr(name), options=_CHANNEL_OPTIONS)
            for name in ("command", "query", "report")
        }

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        async def close_all() -> None:
            for ch in self.channels.values():
                await ch.close(None)

        self.run(close_all())
        self.loop.close()

    async def send(self, case: Case) -> tuple[Request, Outcome]:
        request = case.build(self.world)
        return request, await self.send_request(case.endpoint, case.via, request, wait_s=case.wait_s)

    async def send_request(
        self, endpoint: Endpoint, via: Via, request: Request, *, wait_s: float = 30.0
    ) -> Outcome:
        if via is Via.GET:
            assert request.path is not None
            return await http_get(self.gateway_port, request.path, wait_s=wait_s)
        if via is Via.GRPC:
            return await grpc_call(
                self.channels[UPSTREAM_OF[endpoint]],
                endpoint.path,
                request.message,
                streaming=endpoint.streaming,
                metadata=request.metadata,
                timeout_s=request.timeout_s,
                wait_s=wait_s,
            )
        text = via is Via.WEB_TEXT
        data = request.body
        if data is None:
            data = frame(request.message)
            if text:
                data = base64.b64encode(data)
        content_type = (
            request.content_type if request.content_type is not None else (TEXT_CT if text else BINARY_CT)
        )
        headers = [(b"X-Grpc-Web", b"1")]
        if content_type:
            headers.append((b"Content-Type", content_type))
        if request.grpc_timeout is not None:
            headers.append((b"grpc-timeout", request.grpc_timeout))
        headers += request.headers
        # The gateway answers in the form the content type names, whatever was sent.
        text = b"grpc-web-text" in content_type.lower()
        return await grpc_web_call(
            self.gateway_port,
            request.path or endpoint.path,
            data,
            headers=headers,
            text=text,
            streaming=endpoint.streaming,
            subs=request.subs,
            wait_s=wait_s,
        )


def violations(outcome: Outcome, request: Request) -> list[str]:
    """What no answer may ever do, whatever the input: the suite's invariants."""
    out = []
    if outcome.code == NO_ANSWER:
        out.append(f"no answer: {outcome.message}")
    if outcome.code in (INTERNAL, UNKNOWN):
        out.append("INTERNAL/UNKNOWN for a client's request")
    if outcome.http >= 500:
        out.append(f"HTTP {outcome.http}")
    if outcome.code is not None and len(outcome.message) > MAX_MESSAGE_CHARS:
        out.append(f"status message of {len(outcome.message)} characters")
    if outcome.code is None:
        if len(outcome.message) > HTTP_ECHO_LIMIT + 200:
            out.append(f"plain HTTP answer of {len(outcome.message)} characters")
    else:
        echoed = longest_echo_at_least(outcome.message, request.sent_bytes())
        if echoed:
            out.append(f"echoes over {ECHO_LIMIT} characters of the request: {echoed[:40]!r}...")
    return out


def longest_echo_at_least(message: str, sent: bytes) -> str:
    """The first run of >= ECHO_LIMIT bytes of the message found in the request, or "".

    Such a run contains a whole window of the message starting at a multiple of
    the window size, so only those windows are searched; a hit is then grown both
    ways (binary search: every part of a run found is found too).
    """
    data = message.encode("utf-8", "surrogateescape")
    if len(data) < ECHO_LIMIT or len(sent) < ECHO_LIMIT:
        return ""
    for i in range(0, len(data) - _WINDOW + 1, _WINDOW):
        if data[i : i + _WINDOW] not in sent:
            continue
        end = _grow(lambda k, i=i: data[i:k] in sent, i + _WINDOW, len(data))  # type: ignore[misc]
        start = i - _grow(lambda k, i=i, end=end: data[i - k : end] in sent, 0, i)  # type: ignore[misc]
        if end - start >= ECHO_LIMIT:
            return data[start:end].decode("utf-8", "replace")
    return ""


def _grow(holds: Callable[[int], bool], low: int, high: int) -> int:
    """The largest k in [low, high] for which holds(k), given holds(low) and monotony."""
    while low < high:
        mid = (low + high + 1) // 2
        if holds(mid):
            low = mid
        else:
            high = mid - 1
    return low
