"""A LiveBus session of the gateway: one Open stream of a browser page.

The stream machinery (coalescing, byte cap, heartbeats, grouped frames) is
myko/live_session.py, shared with query_svc and report_svc; the gateway adds
the admission ticket the stream holds and the feed behind each subscription.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter

from myko.gateway.admission import Ticket
from myko.gateway.feeds import Feed
from myko.live_session import Session as LiveSession


class Session(LiveSession):
    def __init__(
        self,
        session_id: str,
        ticket: Ticket,
        *,
        heartbeat_s: float,
        max_unsent_bytes: int,
        on_fail: Callable[[LiveSession], None],
        grouped: bool = False,
        coalesced: Counter | None = None,
    ) -> None:
        super().__init__(
            session_id,
            heartbeat_s=heartbeat_s,
            max_unsent_bytes=max_unsent_bytes,
            on_fail=on_fail,
            grouped=grouped,
            coalesced=coalesced,
        )
        self.ticket = ticket
        self.subs: dict[str, Feed] = {}
