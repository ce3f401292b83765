"""The status text a browser may see.

Services may echo parts of a request in their status messages, and grpc's own
transport errors name internal addresses ("failed to connect to all addresses;
... ipv4:10.0.3.7:50051 ..."). What reaches a caller is cut to a bounded length
and transport errors are replaced by a sentence naming only the upstream.
"""

from __future__ import annotations

import re

import grpc

# Long enough for any message the services write on purpose.
MAX_STATUS_MESSAGE_CHARS = 1024
# grpc core phrasing for channel-level failures; these carry peer addresses.
_TRANSPORT_TEXT = re.compile(
    r"ipv4:|ipv6:|unix:|dns:|failed to connect|Socket closed|Connection reset|GOAWAY", re.I
)


def clip(message: str, limit: int = MAX_STATUS_MESSAGE_CHARS) -> str:
    if len(message) <= limit:
        return message
    return message[:limit] + f"... ({len(message) - limit} more characters)"


def upstream_details(upstream_name: str, exc: grpc.aio.AioRpcError) -> str:
    """The message to pass on for an upstream call that failed."""
    details = exc.details() or exc.code().name
    if exc.code() is grpc.StatusCode.UNAVAILABLE and _TRANSPORT_TEXT.search(details):
        return f"{upstream_name} service unavailable"
    return clip(details)
