"""Keeping Python's cyclic garbage collector out of a bulk load until it is done.

A service loading its state (a reader catching up over the entity topics, a
mirror taking repo_svc's snapshot) builds a few long-lived objects per entity,
and aiokafka builds a dozen short-lived ones per record it hands over. The
collector's passes over them were a third of a bare aiokafka consumer's CPU
here, and more in a service, whose full collections walk every entity stored
so far (docs/benchmarks.md, "Catch-up and start-up"). While a hold lasts the
collector is off and what exists is frozen (`gc.freeze()`); reference counting
frees objects as usual, only cycles wait for the release, which hands every
frozen object back to the collector's oldest generation and turns the collector
back on (if it was on): from then on the process collects as it always did.

The collector is one per process: a release hands back everything frozen so
far, including what another holder froze (which then only loses its shortcut);
the collector ends on once every holder has released, if it was on before the first.
"""

from __future__ import annotations

import gc


class CollectorHold:
    """`hold()` after each chunk of a load; `release()` once loaded (or abandoned)."""

    def __init__(self) -> None:
        self._held = False
        self._was_enabled = True

    @property
    def held(self) -> bool:
        return self._held

    def hold(self) -> None:
        """Turn the collector off (first time) and freeze every object that exists now (O(1))."""
        if not self._held:
            self._was_enabled = gc.isenabled()
            gc.disable()
            self._held = True
        gc.freeze()

    def release(self) -> None:
        """Hand the frozen objects back to the collector and turn it back on if it was."""
        if self._held:
            self._held = False
            gc.unfreeze()
            if self._was_enabled:
                gc.enable()
