"""Windows: a query whose result is one slice (top-N or a page) of its ordered matches.

The app author declares the window where the query is registered:

    @handlers.query(TargetsPage, window=Window(max_limit=500, offset_field="offset"))
    def page(q: TargetsPage, repos: Store, tenant: str) -> Observable[list[Target]]:
        return repos.of(Target).watch(equal={"tenant": tenant}, order_by=by_name)

The handler returns its whole ordered watch; the framework reads the request's
limit (and offset) fields, refuses one past the declared bounds
(INVALID_ARGUMENT), and asks the watch for that window only (`EntityWatch.windowed`).
Every emission is still a full array: the complete window, in order, with the
number of all matches beside it (`QueryResult.window`).

`OrderedMatches` is the maintenance: the first positions of the order (as far
as the windows reach, chosen by a partial selection, not a sort of every
match) in one sorted list, so a change costs a binary search and a list
insert/delete (a memmove), not a sort; a change that lands after a window
moves nothing in it and emits nothing (unless the total is wanted and the
count of matches changed).
`SharedOrder` serves every window of one ordered selection from one such
list: the pages of a query share its sort (myko/live_bus.py keys them).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import reactivex
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from reactivex import Observable
from reactivex.abc import DisposableBase, ObserverBase, SchedulerBase
from reactivex.disposable import Disposable

from myko.errors import ConfigError, InvalidArgument

E = TypeVar("E", bound=Message)

# Past this many changes in one batch (as a share of the matches) a re-sort of the
# nearly sorted keys (or a new selection from a kept order) is cheaper than one
# insert/delete per change.
_RESORT_SHARE = 16
# Positions held sorted beyond what the windows reach, at least: deletes inside a
# page then rarely need a new selection.
_SPARE = 64
# When a selection would take this share of the unsorted matches or more (1/4), sort them all.
_SELECT_SHARE = 4
_INTEGER_TYPES = {
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
}


@dataclass(frozen=True)
class WindowSpec:
    """One request's window: `limit` entities from position `offset` of the order."""

    offset: int
    limit: int

    @property
    def end(self) -> int:
        """The position just past the window."""
        return self.offset + self.limit


@dataclass(frozen=True)
class Window:
    """A query's declared window (see the module docstring).

    `limit_field` (and `offset_field` for a page; None makes a top-N, always
    from position 0) name integer fields of the query message. A request's
    limit of 0 means `default_limit` (`max_limit` when not given); a limit past
    `max_limit` or an offset past `max_offset` is INVALID_ARGUMENT. With
    `total`, each result carries how many entities match in all (a UI's
    "rows 51-100 of N"), so adding or deleting a match anywhere emits.
    """

    max_limit: int
    limit_field: str = "limit"
    offset_field: str | None = None
    default_limit: int | None = None
    max_offset: int = 10_000_000
    total: bool = True

    def check(self, query: type[Message]) -> None:
        """At registration: the fields exist, are integers, and the bounds make sense."""
        name = query.DESCRIPTOR.full_name
        if self.max_limit < 1:
            raise ConfigError(f"query {name}: window max_limit must be at least 1, not {self.max_limit}")
        if self.default_limit is not None and not 1 <= self.default_limit <= self.max_limit:
            raise ConfigError(
                f"query {name}: window default_limit {self.default_limit} is not within 1..{self.max_limit}"
            )
        if self.max_offset < 0:
            raise ConfigError(f"query {name}: window max_offset must not be negative")
        fields = [self.limit_field] + ([self.offset_field] if self.offset_field is not None else [])
        if len(set(fields)) != len(fields):
            raise ConfigError(f"query {name}: window limit and offset must be different fields")
        for field_name in fields:
            field = query.DESCRIPTOR.fields_by_name.get(field_name)
            if field is None or field.is_repeated or field.type not in _INTEGER_TYPES:
                raise ConfigError(
                    f"query {name}: window field {field_name!r} must be a singular integer field of the "
                    f"message (e.g. `uint32 {field_name} = N;`)"
                )

    def of(self, params: Message) -> WindowSpec:
        """The request's window; INVALID_ARGUMENT when it is out of bounds."""
        limit = int(getattr(params, self.limit_field))
        if limit == 0:
            limit = self.default_limit if self.default_limit is not None else self.max_limit
        if not 1 <= limit <= self.max_limit:
            raise InvalidArgument(self.limit_field, f"must be within 1..{self.max_limit} (0: the default)")
        offset = 0
        if self.offset_field is not None:
            offset = int(getattr(params, self.offset_field))
            if not 0 <= offset <= self.max_offset:
                raise InvalidArgument(self.offset_field, f"must be within 0..{self.max_offset}")
        return WindowSpec(offset, limit)

    def without_window(self, params: Message) -> Message:
        """A copy of `params` with the window's fields cleared: what every page has in common."""
        base = type(params)()
        base.CopyFrom(params)
        base.ClearField(self.limit_field)
        if self.offset_field is not None:
            base.ClearField(self.offset_field)
        return base

    def normalise(self, params: Message, spec: WindowSpec) -> None:
        """Write the effective window into `params`, so equal windows share one evaluation key."""
        setattr(params, self.limit_field, spec.limit)
        if self.offset_field is not None:
            setattr(params, self.offset_field, spec.offset)


@dataclass(frozen=True, eq=True)
class WindowResult(Generic[E]):
    """One emission of a windowed watch: the window's entities in order, where it starts,
    and how many entities match in all (None when the query does not ask for it)."""

    items: list[E]
    offset: int
    total: int | None


def apply_batch(
    relevant: Mapping[str, E | None],
    *,
    matches: int,
    apply_one: Callable[[str, E | None], int | None],
    reselect: Callable[[Mapping[str, E | None]], None],
) -> int | None:
    """Apply a batch of relevant changes to an ordered selection of `matches` entities:
    the lowest position that may now hold something else, or None.

    Shared by `OrderedMatches` and `KeptOrderMatches`, which differ in what one change
    costs; past a share of the matches, selecting again is cheaper than change by change.
    """
    if not relevant:
        return None
    if len(relevant) * _RESORT_SHARE > matches + _RESORT_SHARE:
        reselect(relevant)
        return 0
    low: int | None = None
    for entity_id, entity in relevant.items():
        pos = apply_one(entity_id, entity)
        if pos is not None and (low is None or pos < low):
            low = pos
    return low


class OrderedMatches(Generic[E]):
    """The matches of a watch in order, kept up to date change by change.

    Order is `order_by(entity)`, ties broken by id, so equal keys have one
    stable order. `apply` takes a batch of changes (id -> new entity, or None
    when it no longer matches or is gone) and returns the lowest position that
    may differ afterwards (None: nothing moved), which is all a window needs
    to know whether it is touched.

    Only the first positions are kept sorted: as many as the windows reach
    (`upto`, and whatever `slice` asks for later) plus a spare, chosen by a
    partial selection (a threshold from `heapq.nsmallest`, then a sort of
    what falls under it), so the first page of 100k matches costs the keys
    and an O(n) selection, not a sort of all of them. Everything past the held
    positions ranks after `_bound` (the last held (key, id) when they were
    chosen); a change there moves no held position. When deletes leave fewer
    held positions than a window reaches, the next ones are selected again.
    Without `upto`, or when a window reaches most of the matches, all of them
    are sorted once.
    """

    def __init__(
        self, matches: dict[str, E], order_by: Callable[[E], Any], *, upto: int | None = None
    ) -> None:
        self._order_by = order_by
        self._items = matches  # owned from here on
        self._keys: dict[str, Any] = {i: order_by(e) for i, e in matches.items()}
        # The first len(_sorted) positions of the order. _bound is the rank every
        # unheld match is above; _ALL: every match is held (in order).
        self._sorted: list[str] = []
        self._bound: Any = _NONE_HELD
        self._hold(len(matches) if upto is None else upto)

    @property
    def held(self) -> int:
        """How many positions of the order are kept sorted (all of them once fully sorted)."""
        return len(self._sorted)

    def _rank(self, entity_id: str) -> tuple[Any, str]:
        return (self._keys[entity_id], entity_id)

    def _position(self, key: Any, entity_id: str) -> int:
        return bisect.bisect_left(self._sorted, (key, entity_id), key=self._rank)

    def _is_held(self, key: Any, entity_id: str) -> bool:
        bound = self._bound
        return bound is _ALL or (bound is not _NONE_HELD and (key, entity_id) <= bound)

    def _hold(self, upto: int, *, spare: bool = True) -> None:
        """Extend the held positions to at least `upto` (or to every match), with a spare."""
        if self._bound is _ALL or len(self._sorted) >= upto:
            return
        keys = self._keys
        bound = self._bound
        if bound is _NONE_HELD:
            rest: Any = keys.items()
        else:
            low_key, low_id = bound
            rest = [(i, k) for i, k in keys.items() if k > low_key or (k == low_key and i > low_id)]
        wanted = upto - len(self._sorted)
        if spare:
            wanted += max(wanted, _SPARE)  # so that a few deletes do not select again
        if wanted * _SELECT_SHARE >= len(rest):
            chosen = [i for i, _ in rest]
        else:
            # The wanted-th smallest key, then everything up to it: ties on that key all
            # come along (so the id breaks them exactly), and no key after it is held.
            rest_keys = keys.values() if bound is _NONE_HELD else (k for _, k in rest)
            threshold = heapq.nsmallest(wanted, rest_keys)[-1]
            chosen = [i for i, k in rest if k <= threshold]
        # Ids first, then a stable sort by key: ties stay in id order, and comparing
        # keys (not (key, id) pairs) halves the sort.
        chosen.sort()
        chosen.sort(key=keys.__getitem__)
        self._sorted.extend(chosen)
        if len(chosen) == len(rest):
            self._bound = _ALL
        else:
            last = chosen[-1]
            self._bound = (keys[last], last)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._items

    def slice(self, offset: int, limit: int) -> list[E]:
        self._hold(offset + limit)
        items = self._items
        return [items[i] for i in self._sorted[offset : offset + limit]]

    def apply(self, changed: Mapping[str, E | None]) -> int | None:
        """Apply changes; the lowest position that may now hold something else, or None."""
        items = self._items
        relevant = {
            i: e for i, e in changed.items() if (e is not None and items.get(i) is not e) or i in items
        }
        return apply_batch(
            relevant, matches=len(items), apply_one=self._apply_one, reselect=self._apply_by_reselect
        )

    def _apply_one(self, entity_id: str, entity: E | None) -> int | None:
        entries = self._sorted
        old_key = self._keys.get(entity_id, _ABSENT)
        was_held = old_key is not _ABSENT and self._is_held(old_key, entity_id)
        if entity is None:
            if old_key is _ABSENT:
                return None
            del self._items[entity_id]
            if not was_held:
                del self._keys[entity_id]
                return len(entries)  # past the held positions: none of them moves
            pos = self._position(old_key, entity_id)
            del entries[pos]
            del self._keys[entity_id]
            return pos
        if self._items.get(entity_id) is entity:
            return None
        new_key = self._order_by(entity)
        self._items[entity_id] = entity
        if old_key is not _ABSENT and old_key == new_key:
            # Same place in the order: only that position shows the change.
            return self._position(old_key, entity_id) if was_held else len(entries)
        low: int | None = None
        if was_held:
            low = self._position(old_key, entity_id)
            del entries[low]
        self._keys[entity_id] = new_key
        if self._is_held(new_key, entity_id):
            pos = self._position(new_key, entity_id)
            entries.insert(pos, entity_id)
        else:
            pos = len(entries)
        return pos if low is None else min(low, pos)

    def _apply_by_reselect(self, changed: Mapping[str, E | None]) -> None:
        for entity_id, entity in changed.items():
            if entity is None:
                if self._items.pop(entity_id, None) is not None:
                    del self._keys[entity_id]
            elif self._items.get(entity_id) is not entity:
                self._items[entity_id] = entity
                self._keys[entity_id] = self._order_by(entity)
        upto = len(self._items) if self._bound is _ALL else len(self._sorted)
        self._sorted = []
        self._bound = _NONE_HELD
        self._hold(upto, spare=False)


class Matches(Protocol[E]):
    """An ordered selection kept for windows: `OrderedMatches`, or a `KeptOrderMatches`
    (myko/kept_order.py) that takes its positions from an order the store keeps."""

    @property
    def held(self) -> int: ...

    def __len__(self) -> int: ...

    def slice(self, offset: int, limit: int) -> list[E]: ...

    def apply(self, changed: Mapping[str, E | None]) -> int | None: ...


class MatchSource(Protocol[E]):
    """What a SharedOrder follows: an ordered selection of a Repo (`EntityWatch`)."""

    def matches(self, upto: int) -> Matches[E]:
        """The matches now, in order, with at least the first `upto` positions held."""
        ...

    def follow(self, on_changes: Callable[[Mapping[str, E | None]], None]) -> DisposableBase:
        """Each applied batch: changed id -> the entity when it matches, None when it does not."""
        ...


class _WindowSubscriber(Generic[E]):
    def __init__(self, spec: WindowSpec, total: bool, observer: ObserverBase[WindowResult[E]]) -> None:
        self.spec = spec
        self.end = spec.offset + spec.limit
        self.total = total
        self.observer = observer
        self.last: WindowResult[E] | None = None


class SharedOrder(Generic[E]):
    """One ordered selection, kept once, serving any number of windows over it.

    Page 1 and page 2 of the same query and scope (and a top-N of the same order)
    are windows of one SharedOrder: the sort and its upkeep are paid once, and
    turning a page costs a slice, not a new sort of every match. It follows the
    repo from the first window on; when the last window goes, `on_idle` is
    called (the owner may keep it a while for the next page, then `close()`).
    """

    def __init__(
        self, source: MatchSource[E], *, on_idle: Callable[[SharedOrder[E]], None] | None = None
    ) -> None:
        self._source = source
        self._on_idle = on_idle
        self._matches: Matches[E] | None = None
        self._following: DisposableBase | None = None
        self._windows: list[_WindowSubscriber[E]] = []

    @property
    def windows(self) -> int:
        return len(self._windows)

    def window(self, spec: WindowSpec, *, total: bool = True) -> Observable[WindowResult[E]]:
        """The window `spec` now, then whenever it (or, with `total`, the count of matches) changes."""

        def subscribe(
            observer: ObserverBase[WindowResult[E]], scheduler: SchedulerBase | None = None
        ) -> DisposableBase:
            matches = self._start(spec.offset + spec.limit)
            sub = _WindowSubscriber(spec, total, observer)
            sub.last = self._result(matches, sub)
            self._windows.append(sub)
            observer.on_next(sub.last)
            return Disposable(lambda: self._leave(sub))

        return reactivex.create(subscribe)

    def close(self) -> None:
        """Stop following the repo and drop the order (the windows, if any, see no more changes)."""
        if self._following is not None:
            self._following.dispose()
            self._following = None
        self._matches = None

    def _start(self, upto: int) -> Matches[E]:
        if self._matches is None:
            # Sorted only as far as this first window reaches (and a spare): later
            # windows of the order extend it as they need (OrderedMatches.slice).
            self._matches = self._source.matches(upto)
            self._following = self._source.follow(self._on_changes)
        return self._matches

    def _leave(self, sub: _WindowSubscriber[E]) -> None:
        if sub in self._windows:
            self._windows.remove(sub)
        if not self._windows:
            if self._on_idle is None:
                self.close()
            else:
                self._on_idle(self)

    @staticmethod
    def _result(matches: Matches[E], sub: _WindowSubscriber[E]) -> WindowResult[E]:
        spec = sub.spec
        return WindowResult(
            matches.slice(spec.offset, spec.limit), spec.offset, len(matches) if sub.total else None
        )

    def _on_changes(self, changed: Mapping[str, E | None]) -> None:
        matches = self._matches
        if matches is None:
            return
        before = len(matches)
        low = matches.apply(changed)
        counted = len(matches) != before
        for sub in list(self._windows):
            if not ((low is not None and low < sub.end) or (sub.total and counted)):
                continue  # after this window: nothing in it moved
            result = self._result(matches, sub)
            last = sub.last
            if last is None or result.total != last.total or not _same(result.items, last.items):
                sub.last = result
                sub.observer.on_next(result)


def _same(a: list[E], b: list[E]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class _Marker:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


_ABSENT: Any = _Marker("absent")
_NONE_HELD: Any = _Marker("none held")
_ALL: Any = _Marker("all held")
