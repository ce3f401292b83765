"""LiveBus core: open sessions, their subscriptions, and the shared feeds behind them.

A session's subscriptions are fixed when it opens. Each is fed by the Feed with
its key (feeds.FeedKey), created on first use and cancelled when its last
subscription leaves. Limits (admission.Admission, GatewaySettings) are checked
before anything opens: a refused Open holds nothing.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence

import grpc

from myko.errors import ResourceExhausted, Unauthenticated
from myko.gateway.admission import Admission
from myko.gateway.feeds import Feed, FeedKey, error_frame
from myko.gateway.sessions import Session
from myko.gateway.upstreams import Upstreams
from myko.live_session import Session as LiveSession
from myko.metrics.gateway import GatewayMetrics
from myko.settings import GatewaySettings


class FeedHub:
    def __init__(
        self,
        upstreams: Upstreams,
        settings: GatewaySettings,
        admission: Admission,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._upstreams = upstreams
        self._metrics = metrics
        self._settings = settings
        self._admission = admission
        self._sessions: dict[str, Session] = {}
        self._feeds: dict[FeedKey, Feed] = {}

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def feed_count(self) -> int:
        return len(self._feeds)

    def open(
        self,
        subscriptions: Sequence[tuple[str, FeedKey]],
        client: str,
        *,
        expires_at: float | None = None,
        grouped: bool = False,
    ) -> Session:
        """A session fed by these (sub_id, key) pairs; validate them before calling.

        `expires_at` (epoch seconds): the session ends UNAUTHENTICATED then, when its token expires.
        `grouped`: subscriptions of one feed share frames (LiveOpen.group_results)."""
        new_feeds = len({key for _, key in subscriptions if key not in self._feeds})
        if len(self._feeds) + new_feeds > self._settings.max_feeds:
            raise ResourceExhausted(
                f"the gateway holds its limit of {self._settings.max_feeds} upstream feeds"
            )
        ticket = self._admission.admit(client, len(subscriptions))
        session = Session(
            secrets.token_urlsafe(12),
            ticket,
            heartbeat_s=self._settings.live_heartbeat_ms / 1000,
            max_unsent_bytes=self._settings.max_stream_unsent_bytes,
            on_fail=self._on_session_failed,
            grouped=grouped,
            coalesced=self._metrics.coalesced if self._metrics is not None else None,
        )
        self._sessions[session.id] = session
        for sub_id, key in subscriptions:
            feed = self._feeds.get(key)
            if feed is None:
                feed = self._feeds[key] = Feed(
                    key,
                    self._upstreams,
                    self._admission.gauge,
                    self._feed_ended,
                    results=self._metrics.feed_results if self._metrics is not None else None,
                )
            session.subs[sub_id] = feed
            feed.add(session.id, sub_id, session)
        if expires_at is not None:
            session.expiry = asyncio.get_running_loop().call_later(
                max(0.0, expires_at - time.time()),
                session.fail,
                Unauthenticated("the token expired; renew it and open the stream again"),
            )
        return session

    def close(self, session: Session) -> None:
        session.close()
        if self._sessions.pop(session.id, None) is None:
            return
        for sub_id in list(session.subs):
            self._detach(session, sub_id)
        self._admission.release(session.ticket)

    def _on_session_failed(self, session: LiveSession) -> None:
        # Deferred: a feed may be mid-delivery to this session.
        gateway_session = self._sessions.get(session.id)
        if gateway_session is not None:
            asyncio.get_running_loop().call_soon(self.close, gateway_session)

    def _feed_ended(self, feed: Feed, code: grpc.StatusCode, message: str) -> None:
        if self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]
        for (session_id, sub_id), _ in list(feed.listeners.items()):
            session = self._sessions.get(session_id)
            if session is None or session.subs.get(sub_id) is not feed:
                continue
            del session.subs[sub_id]
            if code is grpc.StatusCode.UNAUTHENTICATED:
                # The token behind this feed is every listener's (it is part of the key):
                # expired or revoked, so the whole stream ends and the page signs in again.
                session.fail(Unauthenticated(message))
            else:
                session.deliver(sub_id, error_frame(sub_id, code, message))
        feed.listeners.clear()

    async def aclose(self) -> None:
        for session in list(self._sessions.values()):
            self.close(session)
        feeds = list(self._feeds.values())
        self._feeds.clear()
        for feed in feeds:
            feed.cancel()
        for feed in feeds:
            await feed.wait_closed()

    def _detach(self, session: Session, sub_id: str) -> None:
        feed = session.subs.pop(sub_id)
        session.discard(sub_id)
        feed.remove(session.id, sub_id)
        if not feed.listeners and self._feeds.get(feed.key) is feed:
            # Nobody watches any more: stop the upstream stream.
            del self._feeds[feed.key]
            feed.cancel()
