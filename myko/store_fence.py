"""Wait until a local Store reflects everything committed to its topics so far.

A saga reads state to decide its commands (a zone's targets, say). Its events
arrive on one topic while that state comes from others, and Kafka orders
nothing across topics, so "the store has read past this event" is not enough:
a Target committed before the Zone's delete could still be unread. Asking the
broker for the last stable offsets of every partition the store's reader
follows, after the event was received, and waiting for the store to reach
them, closes that gap. (The command leader does the same on election.)
"""

from __future__ import annotations

from aiokafka.errors import KafkaError

from myko.errors import Unavailable
from myko.ports import Feed
from myko.repo import Store


class StoreFence:
    def __init__(self, reader: Feed, store: Store, *, timeout_s: float = 30.0) -> None:
        self._reader = reader
        self._store = store
        self._timeout_s = timeout_s

    async def sync(self) -> None:
        """Return once the store has read everything committed before this call."""
        try:
            ends = await self._reader.end_offsets()
        except (KafkaError, OSError) as exc:
            raise Unavailable(f"cannot read end offsets: {exc}") from exc
        await self._store.wait_for(ends, timeout_s=self._timeout_s)
