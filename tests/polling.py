"""Waiting in tests for state that no event announces (plain counters, fakes' records)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(predicate: Callable[[], bool], *, timeout_s: float = 3.0, every_s: float = 0.01) -> None:
    """Poll `predicate` until it holds; TimeoutError after `timeout_s` (bounded on a loaded machine)."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on
            await asyncio.sleep(every_s)
