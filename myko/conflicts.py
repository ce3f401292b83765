"""Optimistic concurrency for command handlers.

A handler reads the store and proposes writes. The proposal commits only if
nothing it read has changed since it read it ("first committer wins"); otherwise
the handler runs again on fresh state. Two concurrent commands on one entity
therefore never both build on the same old state. The tracker numbers every
applied store batch and remembers, per entity (and per type, for scans), the
batch that last changed it, for as long as some open handler could care.
"""

from __future__ import annotations

from collections.abc import Mapping

from myko.repo import Store, StoreBatch

Key = tuple[str, str]  # (entity type, id)


class ChangeTracker:
    def __init__(self, store: Store) -> None:
        self.seq = 0
        self._last: dict[Key, int] = {}
        self._type_last: dict[str, int] = {}
        self._open: dict[int, int] = {}
        self._prune_at = 1024
        self._next_token = 0
        store.subscribe_batches(self._on_batch)

    def _on_batch(self, batch: StoreBatch) -> None:
        if not batch.events:
            return
        self.seq += 1
        for ev in batch.events:
            self._last[(ev.type, ev.id)] = self.seq
            self._type_last[ev.type] = self.seq
        self._prune()

    def open(self) -> int:
        """Mark a handler run as started; its reads are judged from now on."""
        self._next_token += 1
        self._open[self._next_token] = self.seq
        return self._next_token

    def close(self, token: int) -> None:
        self._open.pop(token, None)
        self._prune()

    def stale(self, reads: Mapping[Key, int], scans: Mapping[str, int]) -> bool:
        """True when an entity read (or a type scanned) changed after the read."""
        return any(self._last.get(k, 0) > seq for k, seq in reads.items()) or any(
            self._type_last.get(t, 0) > seq for t, seq in scans.items()
        )

    def _prune(self) -> None:
        if len(self._last) <= self._prune_at:
            return
        # A change at or before the oldest open read can never make it stale. Tokens
        # are opened in order and seq never decreases, so the first open one is the
        # oldest (no scan of every open handler on each close: a batch opens hundreds).
        floor = next(iter(self._open.values()), self.seq)
        self._last = {k: s for k, s in self._last.items() if s > floor}
        # What is left is still needed: look again once it has doubled, not on every close.
        self._prune_at = max(1024, 2 * len(self._last))
