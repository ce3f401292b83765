"""Kept orders: a declared sort order of one entity type, maintained by the store.

A query declares the orders its handler sorts by where it is registered
(`@handlers.query(Q, order=[by_name])`, docs/authoring.md "Declared orders"),
as it declares indexes. query_svc and report_svc stores then keep, for each
declared order of an entity type, every stored entity's key in sorted form:
the key is computed once per change of the entity (the store decodes a new
state anyway), never per evaluation. A new evaluation of `Repo.watch(order_by=f)`
with a declared `f` walks this order, keeping the ids its selection matches,
and writes its result from the stored bytes: no key, no decode, no sort per
entity. A window's first positions come from it too (`KeptOrderMatches`).

The order is (key, id): ties are broken by id. Keys are kept in blocks of
parallel lists (key, id, stored bytes), about 24 bytes of list slots per entity
plus the key object itself (the bytes are the store's own objects, shared): a
new evaluation chains the blocks' bytes, no dict lookup per entity. An entity's
bytes in the blocks are taken from the store once its change is applied (the
store calls `change` before it stores the new bytes): when its addition is
merged, and, for a change that kept its place, at the next read (a bisection
each, or every block's bytes again when many changed: a change costs nothing
more while nothing reads the order). Additions of one batch go to a pending
dict and are merged when the order is next read: a bulk load (a catch-up, a
snapshot) costs one sort, later changes an insertion each. A key function that
raises or keys that do not compare stop the order (logged once): the watches of
that order then sort as undeclared orders do.
"""

from __future__ import annotations

import bisect
import logging
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain, compress
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from myko.query_window import apply_batch

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Message)

# Entities per block (a block splits at twice this): inserting is a memmove of ~8 KB.
_LOAD = 1000
# A flush merges pending entries one by one below this share of the order (1/8), else sorts.
_MERGE_SHARE = 8
# Bytes changed in place are found one by one (bisections, ~7-12 us cold at 100k) below this
# share of the order (1/16), else every block's bytes are taken again (~0.5 us per entity).
_REFRESH_SHARE = 16


class KeptOrder(Generic[E]):
    """Every entity of one type as (key(entity), id), sorted; maintained change by change."""

    def __init__(
        self,
        key: Callable[[E], Any],
        entity_name: str,
        stored: Callable[[], Iterable[tuple[str, E]]],
        encoded: Callable[[], Mapping[str, bytes]],
        *,
        built: bool = True,
    ) -> None:
        self.key = key
        self.name = f"{entity_name} by {getattr(key, '__qualname__', repr(key))}"
        # Every stored (id, entity) now: what a build (the first read after a bulk load) sorts.
        self._stored = stored
        # id -> stored bytes now (the store's dict, looked up on each use: a load may replace it).
        self._encoded = encoded
        # Not built: nothing kept, changes cost nothing; the next read builds it.
        self.built = built
        self._keys: list[list[Any]] = []
        self._ids: list[list[str]] = []
        self._values: list[list[bytes]] = []
        # (last key, last id) of each block, for finding a block by bisection.
        self._maxes: list[tuple[Any, str]] = []
        # id -> key of entities added since the last read, not yet in the blocks.
        self._pending: dict[str, Any] = {}
        # id -> key of entities in the blocks whose bytes changed in place (same key), until
        # they are many: then _all_stale (every block's bytes are taken again at the next read).
        self._stale: dict[str, Any] = {}
        self._all_stale = False
        self._size = 0  # entities in the blocks
        self.broken = False

    def __len__(self) -> int:
        return self._size + len(self._pending)

    # --- maintenance (the store, on every applied change) -------------------
    def unbuild(self) -> None:
        """Drop what is kept until the next read (before a bulk load: one sort then, instead
        of a key per entity now and one sort at the read anyway)."""
        if not self.broken:
            self.built = False
            self._clear()

    def _clear(self) -> None:
        self._keys, self._ids, self._values, self._maxes, self._size = [], [], [], [], 0
        self._pending, self._stale, self._all_stale = {}, {}, False

    def change(self, entity_id: str, old: E | None, new: E | None) -> None:
        """The entity `entity_id` went from `old` to `new` (None: absent)."""
        if self.broken or not self.built:
            return
        try:
            new_key = _NOTHING if new is None else self.key(new)
            if old is not None:
                old_key = self.key(old)
                if new is not None and old_key == new_key:
                    # Same place in the order; new bytes (taken when merged, if pending).
                    if not self._all_stale and entity_id not in self._pending:
                        self._stale[entity_id] = old_key
                        if len(self._stale) * _REFRESH_SHARE >= self._size:
                            self._all_stale = True
                            self._stale.clear()
                    return
                if self._pending.pop(entity_id, _NOTHING) is _NOTHING:
                    self._stale.pop(entity_id, None)
                    self._remove(entity_id, old_key)
            if new is not None:
                self._pending[entity_id] = new_key
        except Exception:
            self._break("its key function failed or its keys do not compare")

    def _remove(self, entity_id: str, key: Any) -> None:
        i, pos = self._locate(key, entity_id)
        ids = self._ids[i] if i < len(self._ids) else None
        if ids is None or pos >= len(ids) or ids[pos] != entity_id:
            raise LookupError(f"{entity_id} is not in the order where its key puts it")
        del ids[pos]
        del self._keys[i][pos]
        del self._values[i][pos]
        self._size -= 1
        if not ids:
            del self._ids[i], self._keys[i], self._values[i], self._maxes[i]
        elif pos == len(ids):
            self._maxes[i] = (self._keys[i][-1], ids[-1])

    def _locate(self, key: Any, entity_id: str) -> tuple[int, int]:
        """(block, position in it) where (key, entity_id) is or would go."""
        maxes = self._maxes
        if not maxes:
            return 0, 0
        # The first block whose last (key, id) is not before (key, entity_id): by key
        # alone (no tuple per comparison), then by id among blocks ending on this key.
        last = len(maxes) - 1
        i = bisect.bisect_left(maxes, key, hi=last, key=_first)
        while i < last and maxes[i][0] == key and maxes[i][1] < entity_id:
            i += 1
        keys = self._keys[i]
        lo = bisect.bisect_left(keys, key)
        if lo == len(keys) or keys[lo] != key:
            return i, lo  # no tie on this key: the id does not matter
        if lo + 1 == len(keys) or keys[lo + 1] != key:
            return i, lo if self._ids[i][lo] >= entity_id else lo + 1  # one entity on this key
        hi = bisect.bisect_right(keys, key, lo)
        return i, bisect.bisect_left(self._ids[i], entity_id, lo, hi)

    def _insert(self, entity_id: str, key: Any, value: bytes) -> None:
        if not self._maxes:
            self._keys.append([key])
            self._ids.append([entity_id])
            self._values.append([value])
            self._maxes.append((key, entity_id))
            self._size += 1
            return
        i, pos = self._locate(key, entity_id)
        keys, ids, values = self._keys[i], self._ids[i], self._values[i]
        keys.insert(pos, key)
        ids.insert(pos, entity_id)
        values.insert(pos, value)
        self._size += 1
        if pos == len(ids) - 1:
            self._maxes[i] = (key, entity_id)
        if len(ids) > 2 * _LOAD:
            self._keys[i : i + 1] = [keys[:_LOAD], keys[_LOAD:]]
            self._ids[i : i + 1] = [ids[:_LOAD], ids[_LOAD:]]
            self._values[i : i + 1] = [values[:_LOAD], values[_LOAD:]]
            self._maxes[i : i + 1] = [(keys[_LOAD - 1], ids[_LOAD - 1]), self._maxes[i]]

    def settle(self) -> None:
        """After each applied batch: merge its additions now when that is cheap (a few
        insertions into a large order), or when they are at least as many as the order
        holds (one sort; as the order doubles, all of them cost about two sorts of the
        last size). So a read after a live fill finds little or nothing to merge."""
        pending = self._pending
        if (
            pending
            and self.built
            and (len(pending) * _MERGE_SHARE < self._size or len(pending) >= self._size)
        ):
            self._flush()

    def _flush(self) -> bool:
        """Merge the pending additions into the blocks; False when the order is broken."""
        if self.broken:
            return False
        if not self.built:
            try:
                key = self.key
                self._pending = {entity_id: key(entity) for entity_id, entity in self._stored()}
            except Exception:
                self._break("its key function failed")
                return False
            self.built = True
        pending = self._pending
        if not pending:
            return True
        try:
            encoded = self._encoded()
            if len(pending) * _MERGE_SHARE < self._size:
                for entity_id, key in pending.items():
                    self._insert(entity_id, key, encoded[entity_id])
            else:
                if self._size:
                    every = dict(
                        zip(chain.from_iterable(self._ids), chain.from_iterable(self._keys), strict=True)
                    )
                    every.update(pending)
                else:
                    every = pending
                # Ids first, then a stable sort by key: ties in id order, and the sort compares
                # keys, not (key, id) pairs (faster, and no tuple per entity).
                ids = sorted(every)
                ids.sort(key=every.__getitem__)
                self._ids = [ids[start : start + _LOAD] for start in range(0, len(ids), _LOAD)]
                self._keys = [[every[i] for i in block] for block in self._ids]
                self._values = [list(map(encoded.__getitem__, block)) for block in self._ids]
                self._stale.clear()
                self._all_stale = False
                self._maxes = [
                    (keys[-1], block[-1]) for keys, block in zip(self._keys, self._ids, strict=True)
                ]
                self._size = len(ids)
        except Exception:
            self._break("its keys do not compare")
            return False
        pending.clear()
        return True

    def _refreshed(self) -> bool:
        """Take the stored bytes of the entities changed in place; False when the order is broken."""
        stale = self._stale
        if self.broken or not (stale or self._all_stale):
            return not self.broken
        encoded = self._encoded()
        try:
            if self._all_stale:
                self._values = [list(map(encoded.__getitem__, block)) for block in self._ids]
            else:
                for entity_id, key in stale.items():
                    i, pos = self._locate(key, entity_id)
                    ids = self._ids[i] if i < len(self._ids) else None
                    if ids is None or pos >= len(ids) or ids[pos] != entity_id:
                        raise LookupError(f"{entity_id} is not in the order where its key puts it")
                    self._values[i][pos] = encoded[entity_id]
        except Exception:
            self._break("it lost track of an entity changed in place")
            return False
        stale.clear()
        self._all_stale = False
        return True

    def _break(self, why: str) -> None:
        log.exception("kept order %s stopped: %s; its queries sort as undeclared orders do", self.name, why)
        self.broken = True
        self._clear()

    # --- reads ------------------------------------------------------------
    def usable(self) -> bool:
        """Whether reads can be served (merges what is pending first)."""
        return self._flush() and self._refreshed()

    def encodings(self, among: set[str] | None = None) -> list[bytes]:
        """The stored bytes in order, of all entities or only of those in `among` (the
        store's own objects; the filter in C). Call usable() first."""
        values = chain.from_iterable(self._values)
        if among is None:
            return list(values)
        return list(compress(values, map(among.__contains__, chain.from_iterable(self._ids))))

    def after(
        self, bound: tuple[Any, str] | None, among: set[str], wanted: int
    ) -> tuple[list[Any], list[str]]:
        """Up to `wanted` entities of `among`, in order, after `bound` (None: from the
        start): their keys and their ids. Call usable() first."""
        block, pos = 0, 0
        if bound is not None and self._ids:
            block, pos = self._locate(*bound)
            ids = self._ids[block]
            if pos < len(ids) and ids[pos] == bound[1] and self._keys[block][pos] == bound[0]:
                pos += 1  # after the bound, not at it
        out_keys: list[Any] = []
        out_ids: list[str] = []
        contains = among.__contains__
        for b in range(block, len(self._ids)):
            start = pos if b == block else 0
            ids, keys = self._ids[b][start:], self._keys[b][start:]
            found = list(map(contains, ids))  # the filter in C: map, then compress
            out_ids += compress(ids, found)
            out_keys += compress(keys, found)
            if len(out_ids) >= wanted:
                return out_keys[:wanted], out_ids[:wanted]
        return out_keys, out_ids

    def __iter__(self) -> Iterator[tuple[Any, str]]:
        """(key, id) in order, pending changes merged first (nothing when broken)."""
        if not self.usable():
            return iter(())
        return zip(chain.from_iterable(self._keys), chain.from_iterable(self._ids), strict=True)


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


_NOTHING: Any = _Marker("nothing")
_first = operator.itemgetter(0)


# Positions held beyond what the windows reach, at least (as OrderedMatches).
_SPARE = 64


class KeptOrderMatches(Generic[E]):
    """The matches of a watch in a kept order, for windows (myko/query_window.py).

    The same contract as `OrderedMatches` (len, held, slice, apply), without a
    key or an entity per match: the match ids are a set (from the selection's
    indexes), the first positions are taken from the kept order (`after`), and
    only the held positions keep their key and, once shown, their entity. A
    change costs its key and a bisection in the held positions. When the kept
    order stops (`broken`), this falls back to an `OrderedMatches` of the
    current matches (`fallback()` builds it).
    """

    def __init__(
        self,
        kept: KeptOrder[E],
        matched: set[str],
        decode: Callable[[list[str]], list[E]],
        fallback: Callable[[int], Any],
        *,
        upto: int,
    ) -> None:
        self._kept = kept
        self._key = kept.key
        self._ids = matched  # owned from here on
        self._decode = decode
        self._fallback_of = fallback
        self._fallback: Any = None
        # The first len(_held) positions: ids, their keys, and the entities shown.
        self._held: list[str] = []
        self._held_keys: list[Any] = []
        self._key_of: dict[str, Any] = {}
        self._items: dict[str, E] = {}
        self._bound: Any = None  # last held (key, id); None: none held; _ALL: all held
        self._hold(upto)

    @property
    def held(self) -> int:
        return self._fallback.held if self._fallback is not None else len(self._held)

    def __len__(self) -> int:
        return len(self._fallback) if self._fallback is not None else len(self._ids)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._fallback if self._fallback is not None else entity_id in self._ids

    def _usable(self) -> bool:
        if self._fallback is None and not self._kept.usable():
            self._fallback = self._fallback_of(len(self._held))
        return self._fallback is None

    def _hold(self, upto: int, *, spare: bool = True) -> None:
        if self._bound is _ALL or len(self._held) >= upto or not self._usable():
            return
        wanted = upto - len(self._held)
        if spare:
            wanted += max(wanted, _SPARE)
        keys, ids = self._kept.after(self._bound, self._ids, wanted)
        self._held += ids
        self._held_keys += keys
        self._key_of.update(zip(ids, keys, strict=True))
        self._bound = _ALL if len(ids) < wanted else (keys[-1], ids[-1])

    def _position(self, key: Any, entity_id: str) -> int:
        keys = self._held_keys
        lo = bisect.bisect_left(keys, key)
        return bisect.bisect_left(self._held, entity_id, lo, bisect.bisect_right(keys, key, lo))

    def _is_held(self, key: Any, entity_id: str) -> bool:
        bound = self._bound
        return bound is _ALL or (bound is not None and (key, entity_id) <= bound)

    def slice(self, offset: int, limit: int) -> list[E]:
        self._hold(offset + limit)
        if self._fallback is not None:
            return self._fallback.slice(offset, limit)  # type: ignore[no-any-return]
        ids = self._held[offset : offset + limit]
        items = self._items
        missing = [i for i in ids if i not in items]
        if missing:
            items.update(zip(missing, self._decode(missing), strict=True))
        return [items[i] for i in ids]

    def apply(self, changed: Mapping[str, E | None]) -> int | None:
        """Apply changes; the lowest position that may now hold something else, or None."""
        if not self._usable():
            return self._fallback.apply(changed)  # type: ignore[no-any-return]
        ids, items = self._ids, self._items
        relevant = {i: e for i, e in changed.items() if (e is not None and items.get(i) is not e) or i in ids}
        return apply_batch(relevant, matches=len(ids), apply_one=self._apply_one, reselect=self._reselect)

    def _apply_one(self, entity_id: str, entity: E | None) -> int | None:
        held, keys = self._held, self._held_keys
        low: int | None = None
        old_key = self._key_of.pop(entity_id, _NOTHING)
        if old_key is not _NOTHING:
            low = self._position(old_key, entity_id)
            del held[low], keys[low]
            self._items.pop(entity_id, None)
        if entity is None:
            if entity_id in self._ids:
                self._ids.discard(entity_id)
                if low is None:
                    low = len(held)  # an unheld match went: only the count changed
            return low
        self._ids.add(entity_id)
        key = self._key(entity)
        if not self._is_held(key, entity_id):
            return len(held) if low is None else low
        pos = self._position(key, entity_id)
        held.insert(pos, entity_id)
        keys.insert(pos, key)
        self._key_of[entity_id] = key
        self._items[entity_id] = entity
        return pos if low is None else min(low, pos)

    def _reselect(self, changed: Mapping[str, E | None]) -> None:
        for entity_id, entity in changed.items():
            if entity is None:
                self._ids.discard(entity_id)
            else:
                self._ids.add(entity_id)
        upto = len(self._ids) if self._bound is _ALL else len(self._held)
        before = self._items
        self._held, self._held_keys, self._key_of, self._bound = [], [], {}, None
        self._hold(upto, spare=False)
        # Entities shown before and unchanged stay the same objects (a window that did
        # not change compares equal and emits nothing).
        self._items = {}
        for entity_id in self._held:
            entity = changed.get(entity_id) if entity_id in changed else before.get(entity_id)
            if entity is not None:
                self._items[entity_id] = entity


_ALL: Any = _Marker("all held")
