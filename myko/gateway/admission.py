"""What one client and the whole gateway may hold: streams, subscriptions, buffered bytes.

A *client* is the peer address of the HTTP connection. Behind a proxy or an
ingress that hides client addresses (Docker Swarm's routing mesh does), every
browser shares that address, so the per-client limits become a second
process-wide limit; docs/errors.md says how to size them then. Over any limit a
request gets RESOURCE_EXHAUSTED and holds nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from aiohttp import web

from myko.errors import ResourceExhausted
from myko.settings import GatewaySettings


def client_of(request: web.Request) -> str:
    return request.remote or "unknown"


class ByteGauge:
    """Bytes held for callers: request messages being read and results not yet sent.

    Nothing is refused on the way in (an upstream result has already arrived);
    `check` refuses new requests while the total is over the limit.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def add(self, n: int) -> None:
        self.held += n

    def sub(self, n: int) -> None:
        self.held -= n

    def check(self) -> None:
        if self.held > self.limit:
            raise ResourceExhausted(
                f"the gateway holds over {self.limit} bytes for other streams; retry later"
            )


@dataclass(slots=True)
class Ticket:
    """One admitted stream; released exactly once."""

    client: str
    subscriptions: int
    released: bool = False


class Admission:
    def __init__(self, settings: GatewaySettings, gauge: ByteGauge) -> None:
        self._s = settings
        self.gauge = gauge
        self.streams = 0
        self.subscriptions = 0
        self._client_streams: Counter[str] = Counter()
        self._client_subscriptions: Counter[str] = Counter()

    def admit(self, client: str, subscriptions: int = 0) -> Ticket:
        """A stream (LiveBus Open or proxied Watch) carrying this many subscriptions."""
        s = self._s
        if subscriptions > s.max_subscriptions_per_stream:
            raise ResourceExhausted(
                f"a stream may carry at most {s.max_subscriptions_per_stream} subscriptions"
            )
        self.gauge.check()
        if self.streams >= s.max_streams:
            raise ResourceExhausted(f"the gateway serves its limit of {s.max_streams} streams")
        if self._client_streams[client] >= s.max_streams_per_client:
            raise ResourceExhausted(f"this client has its limit of {s.max_streams_per_client} open streams")
        if self.subscriptions + subscriptions > s.max_subscriptions:
            raise ResourceExhausted(f"the gateway serves its limit of {s.max_subscriptions} subscriptions")
        if self._client_subscriptions[client] + subscriptions > s.max_subscriptions_per_client:
            raise ResourceExhausted(
                f"this client would exceed its limit of {s.max_subscriptions_per_client} subscriptions"
            )
        self.streams += 1
        self.subscriptions += subscriptions
        self._client_streams[client] += 1
        self._client_subscriptions[client] += subscriptions
        return Ticket(client, subscriptions)

    def release(self, ticket: Ticket) -> None:
        if ticket.released:
            return
        ticket.released = True
        self.streams -= 1
        self.subscriptions -= ticket.subscriptions
        self._client_streams[ticket.client] -= 1
        self._client_subscriptions[ticket.client] -= ticket.subscriptions
        # Counter keeps zero entries: drop them so departed clients cost nothing.
        if self._client_streams[ticket.client] <= 0:
            del self._client_streams[ticket.client]
            self._client_subscriptions.pop(ticket.client, None)
