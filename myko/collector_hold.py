"""Keeping the objects of a bulk load out of Python's cyclic garbage collector until it is done.

A service loading its state (a reader catching up over the entity topics, a
mirror taking repo_svc's snapshot) builds a few long-lived objects per entity.
Python's full collections walk every tracked object, and they come more often
the more objects there are: about a quarter of the CPU of a catch-up over 100k
records, growing with the store. `gc.freeze()` moves what exists into a
generation the collector never scans; reference counting still frees those
objects as usual, only cycles among them wait for `release()`.

The collector is one per process: a release hands back everything frozen so
far, including what another holder froze (which then just loses its shortcut).
"""

from __future__ import annotations

import gc


class CollectorHold:
    """`hold()` after each chunk of a load; `release()` once loaded (or abandoned)."""

    def __init__(self) -> None:
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> None:
        """Freeze every object that exists now (O(1): the generations' lists are moved)."""
        gc.freeze()
        self._held = True

    def release(self) -> None:
        """Hand what this holder froze back to the collector's oldest generation."""
        if self._held:
            gc.unfreeze()
            self._held = False
