"""The gRPC channels to the public buses, with pass-through (bytes) serialisers.

The gateway never decodes the messages it forwards: with no serialiser grpc.aio
sends and returns the raw protobuf bytes, so new commands, queries and reports
need no gateway change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from myko.gateway.routes import Upstream
from myko.keepalive import KeepalivePolicy
from myko.settings import TlsSettings
from myko.tls import Transport

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    # Reconnect quickly after a backend restart (default max backoff is 120 s).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


class Upstreams:
    """One HTTP/2 channel per backend; every browser call multiplexes over it."""

    def __init__(
        self,
        addrs: Mapping[Upstream, str],
        *,
        keepalive: KeepalivePolicy | None = None,
        transport: Transport | None = None,
    ) -> None:
        self._addrs = dict(addrs)
        # Keepalive notices a dead backend connection within seconds instead of at
        # the next call, with the period the servers accept (myko/keepalive.py).
        options = [*(keepalive or KeepalivePolicy()).client_options(), *_CHANNEL_OPTIONS]
        # The buses' public listeners: TLS verified against the CA when MYKO_TLS_PUBLIC is on.
        transport = transport or Transport(TlsSettings())
        self._channels = {
            u: transport.channel(a, service=u.value, internal=False, options=options)
            for u, a in addrs.items()
        }

    def unary(self, upstream: Upstream, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        return self._channels[upstream].unary_unary(
            method, request_serializer=None, response_deserializer=None
        )

    def server_stream(
        self, upstream: Upstream, method: str
    ) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
        return self._channels[upstream].unary_stream(
            method, request_serializer=None, response_deserializer=None
        )

    def states(self) -> dict[str, str]:
        return {
            u.value: self._channels[u].get_state(try_to_connect=False).name.lower() for u in self._channels
        }

    def addr(self, upstream: Upstream) -> str:
        return self._addrs[upstream]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close(grace=None)
