"""myko.v1.LiveBus, served by the gateway itself on top of FeedHub.

The request is checked by myko/live_open.py (cheapest first); each
subscription then becomes a FeedKey: its canonical request and the scope
headers. A bad request opens nothing.
"""

from __future__ import annotations

from myko.gateway.canonical import canonical_query, canonical_report
from myko.gateway.feed_hub import FeedHub
from myko.gateway.feeds import FeedKey
from myko.gateway.metadata import Metadata
from myko.gateway.sessions import Session
from myko.live_kind import LiveKind
from myko.live_open import parse_live_open
from myko.principal import Principal


class LiveBus:
    def __init__(self, hub: FeedHub, *, max_subscriptions: int) -> None:
        self._hub = hub
        self._max_subscriptions = max_subscriptions

    def open(self, payload: bytes, scope: Metadata, client: str, principal: Principal) -> Session:
        """A session for this LiveOpen; it ends when the principal's token expires."""
        req = parse_live_open(payload, self._max_subscriptions)
        subs: list[tuple[str, FeedKey]] = []
        for sub in req.subscriptions:
            if sub.WhichOneof("request") == "query":
                subs.append((sub.sub_id, FeedKey(LiveKind.QUERY, canonical_query(sub.query), scope)))
            else:
                subs.append((sub.sub_id, FeedKey(LiveKind.REPORT, canonical_report(sub.report), scope)))
        return self._hub.open(
            subs,
            client,
            expires_at=None if principal.anonymous else principal.expires_at,
            grouped=req.group_results,
        )

    def close(self, session: Session) -> None:
        self._hub.close(session)
