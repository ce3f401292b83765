"""Exponential backoff with jitter, for reconnect and retry loops."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, *, initial_s: float, max_s: float, factor: float = 2.0, jitter: float = 0.2) -> None:
        self._initial = initial_s
        self._max = max_s
        self._factor = factor
        self._jitter = jitter
        self._next = initial_s

    def next(self) -> float:
        """The delay to wait now; each call grows the following one up to the cap."""
        delay = self._next
        self._next = min(self._max, self._next * self._factor)
        return delay * (1 + random.uniform(-self._jitter, self._jitter))

    def reset(self) -> None:
        self._next = self._initial
