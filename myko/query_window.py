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

`OrderedWindow` is the maintenance: the matches' sort keys in one sorted list,
so a change costs a binary search and a list insert/delete (a memmove), not a
sort; a change that lands after the window moves nothing in it and emits
nothing (unless the total is wanted and the count of matches changed).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

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


class OrderedWindow(Generic[E]):
    """The matches of a watch in order, and one window over them, kept up to date.

    Order is `order_by(entity)`, ties broken by id, so equal keys have one
    stable order. `apply` takes a batch of changes (id -> new entity, or None
    when it no longer matches or is gone) and says whether the window or the
    total may have changed; `result()` is then the new window.
    """

    def __init__(
        self,
        matches: Mapping[str, E],
        order_by: Callable[[E], Any],
        spec: WindowSpec,
        *,
        total: bool,
    ) -> None:
        self._order_by = order_by
        self._spec = spec
        self._end = spec.offset + spec.limit
        self._with_total = total
        self._items: dict[str, E] = dict(matches)
        self._keys: dict[str, Any] = {i: order_by(e) for i, e in self._items.items()}
        self._sorted: list[tuple[Any, str]] = sorted((k, i) for i, k in self._keys.items())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._items

    def result(self) -> WindowResult[E]:
        items = self._items
        window = self._sorted[self._spec.offset : self._end]
        return WindowResult(
            [items[i] for _, i in window], self._spec.offset, len(items) if self._with_total else None
        )

    def apply(self, changed: Mapping[str, E | None]) -> bool:
        """Apply changes of matching entities; True when the window or the total may differ."""
        if len(changed) * _RESORT_SHARE > len(self._sorted) + _RESORT_SHARE:
            return self._apply_by_resort(changed)
        dirty = False
        before = len(self._items)
        for entity_id, entity in changed.items():
            dirty = self._apply_one(entity_id, entity) or dirty
        return dirty or (self._with_total and len(self._items) != before)

    def _apply_one(self, entity_id: str, entity: E | None) -> bool:
        entries = self._sorted
        end = self._end
        old_key = self._keys.get(entity_id, _ABSENT)
        if entity is None:
            if old_key is _ABSENT:
                return False
            pos = bisect.bisect_left(entries, (old_key, entity_id))
            del entries[pos]
            del self._keys[entity_id]
            del self._items[entity_id]
            return pos < end
        if self._items.get(entity_id) is entity:
            return False
        new_key = self._order_by(entity)
        self._items[entity_id] = entity
        if old_key is not _ABSENT and old_key == new_key:
            # Same place in the order: only a change of an entity inside the window shows.
            return bisect.bisect_left(entries, (old_key, entity_id)) < end
        dirty = False
        if old_key is not _ABSENT:
            pos = bisect.bisect_left(entries, (old_key, entity_id))
            del entries[pos]
            dirty = pos < end
        self._keys[entity_id] = new_key
        pos = bisect.bisect_left(entries, (new_key, entity_id))
        entries.insert(pos, (new_key, entity_id))
        return dirty or pos < end

    def _apply_by_resort(self, changed: Mapping[str, E | None]) -> bool:
        before = self.result()
        for entity_id, entity in changed.items():
            if entity is None:
                if self._items.pop(entity_id, None) is not None:
                    del self._keys[entity_id]
            elif self._items.get(entity_id) is not entity:
                self._items[entity_id] = entity
                self._keys[entity_id] = self._order_by(entity)
        self._sorted = sorted((k, i) for i, k in self._keys.items())
        after = self.result()
        return after.total != before.total or not _same(after.items, before.items)


def _same(a: list[E], b: list[E]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


class _Absent:
    pass


_ABSENT: Any = _Absent()
