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

`OrderedMatches` is the maintenance: the matches' sort keys in one sorted
list, so a change costs a binary search and a list insert/delete (a memmove),
not a sort; a change that lands after a window moves nothing in it and emits
nothing (unless the total is wanted and the count of matches changed).
`SharedOrder` serves every window of one ordered selection from one such
list: the pages of a query share its sort (myko/live_bus.py keys them).
"""

from __future__ import annotations

import bisect
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
# nearly sorted keys is cheaper than one insert/delete per change.
_RESORT_SHARE = 16
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


class OrderedMatches(Generic[E]):
    """The matches of a watch in order, kept up to date change by change.

    Order is `order_by(entity)`, ties broken by id, so equal keys have one
    stable order. `apply` takes a batch of changes (id -> new entity, or None
    when it no longer matches or is gone) and returns the lowest position that
    may differ afterwards (None: nothing moved), which is all a window needs
    to know whether it is touched.
    """

    def __init__(self, matches: dict[str, E], order_by: Callable[[E], Any]) -> None:
        self._order_by = order_by
        self._items = matches  # owned from here on
        self._keys: dict[str, Any] = {i: order_by(e) for i, e in matches.items()}
        self._sorted: list[str] = self._sort()

    def _sort(self) -> list[str]:
        # Ids first, then a stable sort by key: ties stay in id order, and comparing
        # keys (not (key, id) pairs) halves the sort over 100k.
        ids = sorted(self._keys)
        ids.sort(key=self._keys.__getitem__)
        return ids

    def _rank(self, entity_id: str) -> tuple[Any, str]:
        return (self._keys[entity_id], entity_id)

    def _position(self, key: Any, entity_id: str) -> int:
        return bisect.bisect_left(self._sorted, (key, entity_id), key=self._rank)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._items

    def slice(self, offset: int, limit: int) -> list[E]:
        items = self._items
        return [items[i] for i in self._sorted[offset : offset + limit]]

    def apply(self, changed: Mapping[str, E | None]) -> int | None:
        """Apply changes; the lowest position that may now hold something else, or None."""
        items = self._items
        relevant = {
            i: e for i, e in changed.items() if (e is not None and items.get(i) is not e) or i in items
        }
        if not relevant:
            return None
        if len(relevant) * _RESORT_SHARE > len(self._sorted) + _RESORT_SHARE:
            self._apply_by_resort(relevant)
            return 0
        low: int | None = None
        for entity_id, entity in relevant.items():
            pos = self._apply_one(entity_id, entity)
            if pos is not None and (low is None or pos < low):
                low = pos
        return low

    def _apply_one(self, entity_id: str, entity: E | None) -> int | None:
        entries = self._sorted
        old_key = self._keys.get(entity_id, _ABSENT)
        if entity is None:
            if old_key is _ABSENT:
                return None
            pos = self._position(old_key, entity_id)
            del entries[pos]
            del self._keys[entity_id]
            del self._items[entity_id]
            return pos
        if self._items.get(entity_id) is entity:
            return None
        new_key = self._order_by(entity)
        self._items[entity_id] = entity
        if old_key is not _ABSENT and old_key == new_key:
            # Same place in the order: only that position shows the change.
            return self._position(old_key, entity_id)
        low: int | None = None
        if old_key is not _ABSENT:
            low = self._position(old_key, entity_id)
            del entries[low]
        self._keys[entity_id] = new_key
        pos = self._position(new_key, entity_id)
        entries.insert(pos, entity_id)
        return pos if low is None else min(low, pos)

    def _apply_by_resort(self, changed: Mapping[str, E | None]) -> None:
        for entity_id, entity in changed.items():
            if entity is None:
                if self._items.pop(entity_id, None) is not None:
                    del self._keys[entity_id]
            elif self._items.get(entity_id) is not entity:
                self._items[entity_id] = entity
                self._keys[entity_id] = self._order_by(entity)
        self._sorted = self._sort()


class MatchSource(Protocol[E]):
    """What a SharedOrder follows: an ordered selection of a Repo (`EntityWatch`)."""

    @property
    def order_by(self) -> Callable[[E], Any]: ...

    def current(self) -> dict[str, E]: ...

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
        self._matches: OrderedMatches[E] | None = None
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
            matches = self._start()
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

    def _start(self) -> OrderedMatches[E]:
        if self._matches is None:
            self._matches = OrderedMatches(self._source.current(), self._source.order_by)
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
    def _result(matches: OrderedMatches[E], sub: _WindowSubscriber[E]) -> WindowResult[E]:
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


class _Absent:
    pass


_ABSENT: Any = _Absent()
