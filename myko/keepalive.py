"""One HTTP/2 keepalive policy for every gRPC channel and server Myko opens.

Every server (GrpcServer) takes `server_options()`, every channel (the gateway's
upstreams, RepoFeed, command forwarding, the saga's command client) takes
`client_options()`, both built from the same `KeepalivePolicy`, so the two
sides cannot disagree. Long-lived streams are idle for hours when nothing
changes; keepalive pings are what keep such a connection known-good (and keep
NATs and load balancers from dropping it), so the servers must accept them.

The gRPC core (chttp2) rules this relies on:

- A client with `grpc.keepalive_time_ms` = T sends a PING after T without
  activity and closes the connection if no ACK comes within
  `grpc.keepalive_timeout_ms`; `grpc.keepalive_permit_without_calls` lets it
  ping while it has no call open too.
- `grpc.http2.max_pings_without_data` (client, default 2) is how many pings it
  sends with no DATA or HEADERS frame in between before it holds pings back.
  An idle stream sends no data, so we set 0 (no limit): pings stay every T.
- A server counts a strike for every PING that arrives sooner than
  `grpc.http2.min_ping_interval_without_data_ms` (default 5 minutes) after the
  previous one while it has sent no data, or sooner than 2 hours when the
  connection has no call and `grpc.keepalive_permit_without_calls` is 0 on
  the server. After more than `grpc.http2.max_ping_strikes` (default 2)
  strikes it sends GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and every stream
  on the connection ends UNAVAILABLE. Sending data resets the strikes.

Note the server key: the C macro is GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_
WITHOUT_DATA_MS but its string is "grpc.http2.min_ping_interval_without_data_ms".
Myko used to pass "grpc.http2.min_recv_ping_interval_without_data_ms", which
gRPC silently ignores: servers enforced the 5-minute default, the gateway
pinged every 20 s, and every idle feed died of "too many pings" after its
third ping (issue 12, finding 11).

Agreement: servers accept pings down to T/2 apart, clients send them T apart.
A ping can only look early to the server when the previous one was delayed
more than the next (timer slack, a busy host): with a T/2 margin that never
adds up to a strike. Servers also permit pings on connections with no call,
so a client may keep an idle channel warm.

With the defaults (T = 30 s, timeout 10 s): a client pings every 30 s; the
server accepts one every 15 s or slower, so strikes stay at 0 and idle streams
live for hours; a dead peer is noticed within 40 s. Servers ping their
clients every T as well, so a client that vanished without a FIN is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TIME_MS = 30_000
DEFAULT_TIMEOUT_MS = 10_000

ChannelOptions = list[tuple[str, int]]


@dataclass(frozen=True, kw_only=True)
class KeepalivePolicy:
    """`time_ms`: the ping period T; `timeout_ms`: how long a ping may go unanswered."""

    time_ms: int = DEFAULT_TIME_MS
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    # More strikes than this and the server sends GOAWAY (gRPC's default, stated).
    max_ping_strikes: int = 2

    def __post_init__(self) -> None:
        if self.time_ms < 2 or self.timeout_ms < 1:
            raise ValueError("keepalive time and timeout must be positive")

    @property
    def min_ping_interval_ms(self) -> int:
        """The shortest gap between pings a server accepts: half the clients' period."""
        return self.time_ms // 2

    def client_options(self) -> ChannelOptions:
        return [
            ("grpc.keepalive_time_ms", self.time_ms),
            ("grpc.keepalive_timeout_ms", self.timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]

    def server_options(self) -> ChannelOptions:
        return [
            # What the server accepts from clients.
            ("grpc.http2.min_ping_interval_without_data_ms", self.min_ping_interval_ms),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.keepalive_permit_without_calls", 1),
            # The server's own pings to its clients.
            ("grpc.keepalive_time_ms", self.time_ms),
            ("grpc.keepalive_timeout_ms", self.timeout_ms),
            ("grpc.http2.max_pings_without_data", 0),
        ]
