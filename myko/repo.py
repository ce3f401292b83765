"""Repos: the latest state of each entity type, reduced from SET/DEL events.

A `Store` holds one `Repo` per entity type and is fed whole batches (from a
`TopicReader` in repo_svc and command_svc, from RepoService in query_svc and
report_svc). After each batch it moves its watermark first and then notifies,
so anything emitted during a notification reflects exactly `store.watermark`.

Storage: each entity is kept as the bytes it was written with, plus its Kafka
position (and, in repo_svc, the rest of its SET event as bytes). Reads decode
(scans in one batch, myko/entity_batch_decoder.py) and hand out messages the
caller owns; watches emit `EntityArray`s that carry the stored encodings, so a
query result is a concatenation (myko/query_result_encoder.py), and repo_svc
writes a snapshot from the bytes too. docs/benchmarks.md (2026-11-30, "Entities
stored as bytes") has the memory and CPU figures.
"""

from __future__ import annotations

import logging
import operator
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Any, Generic, TypeVar

import reactivex
from google.protobuf.message import Message
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.subject import Subject

from myko.entities import EntityRegistry, EntityType
from myko.entity_array import EntityArray
from myko.entity_batch_decoder import EntityBatchDecoder
from myko.events import DEL, SET, RawRecord, decode_entity
from myko.kept_order import KeptOrder, KeptOrderMatches
from myko.quarantine import Quarantine
from myko.query_window import OrderedMatches, SharedOrder, WindowResult, WindowSpec
from myko.repo_snapshot import (
    FrozenRepo,
    TypeSnapshot,
    applied_events,
    apply_plans,
    columns_of,
    events_of,
    plan_reset,
)
from myko.v1 import item_pb2
from myko.watermark import TopicPartition, Watermark, WatermarkWaiters
from myko.wire_format import any_field_prefix, length_delimited, varint

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Message)
Changes = Mapping[str, Any]  # id -> new entity, or None when deleted


class ChangeBatch(dict[str, Any]):
    """One applied batch of a type: id -> new entity, or None when deleted.

    A watch that selects by a field value asks `relevant` for only the changes
    that can alter its result, from one grouping of the batch by that field
    shared by every such watch: a batch of n changes then costs each of w
    watches O(its own matches) instead of n field reads (100 TargetById
    watches over an import of 100 Targets: ~200 instead of 10,000).
    """

    __slots__ = ("_groups", "_positions")

    def __init__(self) -> None:
        super().__init__()
        # path -> field value -> ids (the fields selected by are scalars, as indexes need).
        self._groups: dict[str, dict[Hashable, list[str]]] = {}
        self._positions: dict[str, int] | None = None

    def relevant(self, path: str, value: Hashable, held: Mapping[str, object]) -> list[tuple[str, Any]]:
        """The changes whose entity has `path` == `value`, or whose id is in `held`
        (it may have left), in the batch's order."""
        groups = self._groups.get(path)
        if groups is None:
            get = operator.attrgetter(path)
            groups = self._groups[path] = {}
            for entity_id, entity in self.items():
                if entity is not None:
                    groups.setdefault(get(entity), []).append(entity_id)
        ids = set(groups.get(value, ()))
        if len(self) <= len(held):
            ids.update(i for i in self if i in held)
        else:
            ids.update(i for i in held if i in self)
        if self._positions is None:
            self._positions = {entity_id: n for n, entity_id in enumerate(self)}
        return [(i, self[i]) for i in sorted(ids, key=self._positions.__getitem__)]


def by_id(entity: Message) -> Any:
    return entity.item.id  # type: ignore[attr-defined]


class _Index:
    """Ids of the entities by the value of one field, kept up to date on every change."""

    def __init__(self, path: str, items: Iterable[tuple[str, Message]]) -> None:
        self._key = operator.attrgetter(path)
        self._ids: dict[Hashable, set[str]] = {}
        for entity_id, entity in items:
            self.add(entity_id, entity)

    def ids(self, value: Hashable) -> set[str]:
        return self._ids.get(value, set())

    def add(self, entity_id: str, entity: Message) -> None:
        self._ids.setdefault(self._key(entity), set()).add(entity_id)

    def remove(self, entity_id: str, entity: Message) -> None:
        self.remove_key(entity_id, self._key(entity))

    def keys(self, entities: Iterable[Message]) -> list[Hashable]:
        return list(map(self._key, entities))

    def add_keys(self, ids: Sequence[str], keys: Sequence[Hashable]) -> None:
        """`add` for many, with their keys computed already (`keys`)."""
        if len(ids) != len(keys):
            raise ValueError(f"{len(ids)} ids, {len(keys)} keys")
        buckets = self._ids
        distinct = set(keys)
        if len(distinct) * _FEW_KEYS <= len(keys):
            # Many ids under few keys (a bulk load): the ids are grouped in lists by key in
            # C, then each group joins its set at once; a set.add per id costs ~1.5x
            # more (docs/benchmarks.md, perf-split). With many keys the lists cost more.
            groups: Mapping[Hashable, Sequence[str]]
            if len(distinct) == 1:  # e.g. one tenant: every id under it
                groups = {next(iter(distinct)): ids}
            else:
                lists: dict[Hashable, list[str]] = {key: [] for key in distinct}
                deque(map(list.append, map(lists.__getitem__, keys), ids), maxlen=0)
                groups = lists
            for key, group in groups.items():
                bucket = buckets.get(key)
                if bucket is None:
                    buckets[key] = set(group)
                else:
                    bucket.update(group)
            return
        for entity_id, key in zip(ids, keys, strict=True):
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = {entity_id}
            else:
                bucket.add(entity_id)

    def remove_key(self, entity_id: str, key: Hashable) -> None:
        bucket = self._ids.get(key)
        if bucket is not None:
            bucket.discard(entity_id)
            if not bucket:
                del self._ids[key]


# _Index.add_keys groups ids in lists by key when each key has this many ids on average.
_FEW_KEYS = 64
# Event.entity = 7 and Event.offset = 8, length-delimited.
_EVENT_ENTITY_TAG = b"\x3a"
_EVENT_OFFSET_TAG = b"\x42"
_MAX_EVENT_FRAMES = 4096
# Decoded entities kept per entity type by default (MYKO_REPO_CACHE_ENTITIES).
DEFAULT_CACHE_ENTITIES = 1024
# A batch with this many events of one type or more, and at least as many as are stored,
# is a bulk load for that type's kept orders (Store._bulk_load).
BULK_EVENTS = 10_000
_UNCHANGED: Any = object()


class Repo(Generic[E]):
    """id -> entity for one type, with reactive watches over it.

    Each entity is stored as the bytes it was written with (about 0.2 KB for
    the example's Target, where a decoded upb message costs ~1.1-1.7 KB of
    RSS), and decoded when read. Reads return messages the caller owns:
    changing one changes nothing in the store or in what others read. The
    last `cache_entities` entities read by id are also kept decoded (private;
    a read gets a copy, ~3x cheaper than decoding), so hot entities are not
    decoded on every command.
    """

    def __init__(
        self,
        entity_type: EntityType[E],
        *,
        keep_events: bool = True,
        cache_entities: int = DEFAULT_CACHE_ENTITIES,
    ) -> None:
        if cache_entities < 0:
            raise ValueError(f"cache_entities must be >= 0, not {cache_entities}")
        self.entity_type = entity_type
        self._decode = entity_type.decode
        # Scans decode all their entities in one parse (myko/entity_batch_decoder.py).
        self._decode_batch = EntityBatchDecoder(entity_type.cls).decode
        # id -> the entity's encoding as written (Event.entity.value): the state.
        self._bytes: dict[str, bytes] = {}
        # id -> (topic, partition, offset) of the SET behind it, for skipping replays.
        self._positions: dict[str, tuple[str, int, int]] = {}
        self._topics: dict[str, str] = {}
        # event_bytes(): frames by entity length, topic fields by topic.
        self._event_frames: dict[int, bytes] = {}
        self._topic_fields: dict[str, bytes] = {}
        # repo_svc serves events (event_of, snapshots): the rest of each SET event
        # (tx, ts, source, principal; no entity, no offset) as bytes. Others keep none.
        self._keep_events = keep_events
        self._envelopes: dict[str, bytes] = {}
        # id -> decoded entity, least recently read first; never handed out itself.
        self._cache_entities = cache_entities
        self._cache: dict[str, E] = {}
        self._changes: Subject[Changes] = Subject()
        # Field path -> index, built the first time a watch or read asks for it.
        # Paths come from handler code, never from requests: their number is fixed.
        self._indexes: dict[str, _Index] = {}
        # Declared orders (key function -> its kept order, myko/kept_order.py), kept
        # from the first event; like index paths, they come from handler code.
        self._orders: dict[Callable[[E], Any], KeptOrder[E]] = {}

    # --- reads -------------------------------------------------------------
    def get(self, entity_id: str) -> E | None:
        """The entity, or None; a message the caller owns (from the cache when hot)."""
        data = self._bytes.get(entity_id)
        if data is None:
            return None
        cache = self._cache
        cached = cache.pop(entity_id, None)
        if cached is None:
            cached = self._decode(data)
            if self._cache_entities == 0:
                return cached
            if len(cache) >= self._cache_entities:
                del cache[next(iter(cache))]
        cache[entity_id] = cached  # most recently read last
        return _copy(cached)

    def get_many(self, ids: Iterable[str]) -> list[E]:
        return [e for i in ids if (e := self.get(i)) is not None]

    def filter(self, where: Callable[[E], bool]) -> list[E]:
        return [e for e in self._decode_batch(self._bytes.values()) if where(e)]

    def find(self, equal: Mapping[str, Hashable]) -> list[E]:
        """Entities whose fields (dotted paths, e.g. "zone_id", "item.id") equal these values.

        Served from indexes: O(matches), not O(entities). Ordered by id."""
        encoded = self._bytes
        return list(self._decode_batch([encoded[i] for i in sorted(self._matching_ids(equal))]))

    def encoded(self, entity_id: str) -> bytes | None:
        """The entity's stored encoding (what was written to Kafka), or None."""
        return self._bytes.get(entity_id)

    def declare_index(self, path: str) -> None:
        """Keep an index of `path` from now on (built at once over what is stored)."""
        if path != "item.id" and path not in self._indexes:
            entities = self._decode_batch(self._bytes.values())
            self._indexes[path] = _Index(path, zip(self._bytes, entities, strict=True))

    def declare_order(self, key: Callable[[E], Any]) -> None:
        """Keep the order of `key` (ties by id) from now on, over what is stored and every change."""
        if key not in self._orders:
            # Over stored entities it is built by its first read (one sort), else kept from here.
            self._orders[key] = KeptOrder(
                key, self.entity_type.name, self._stored, self.encodings, built=not self._bytes
            )

    def _stored(self) -> Iterable[tuple[str, E]]:
        """(id, entity) of every stored entity, decoded in one batch."""
        return zip(self._bytes, self._decode_batch(self._bytes.values()), strict=True)

    def kept_order(self, key: Callable[[E], Any]) -> KeptOrder[E] | None:
        """The kept order of `key` when declared and not stopped (merged up to now), else None."""
        order = self._orders.get(key)
        return order if order is not None and order.usable() else None

    def _matching_ids(self, equal: Mapping[str, Hashable]) -> set[str]:
        found: set[str] | None = None
        for path, value in equal.items():
            if path == "item.id":
                ids = {value} if isinstance(value, str) and value in self._bytes else set()
            else:
                index = self._indexes.get(path)
                if index is None:  # not declared: built by this first use
                    self.declare_index(path)
                    index = self._indexes[path]
                ids = index.ids(value)
            found = set(ids) if found is None else found & ids
            if not found:
                return set()
        return found if found is not None else set(self._bytes)

    def all(self) -> list[E]:
        return list(self._decode_batch(self._bytes.values()))

    def ids(self) -> list[str]:
        return list(self._bytes)

    def event_of(self, entity_id: str) -> item_pb2.Event | None:
        """The SET event that produced the current state (with its offset), rebuilt from
        what is stored; None in a store that keeps no events (Store(keep_events=False))."""
        envelope = self._envelopes.get(entity_id)
        if envelope is None:
            return None
        event = item_pb2.Event.FromString(envelope)
        event.entity.type_url = self.entity_type.type_url
        event.entity.value = self._bytes[entity_id]
        topic, partition, offset = self._positions[entity_id]
        event.offset.topic, event.offset.partition, event.offset.offset = topic, partition, offset
        return event

    def event_bytes(self, entity_id: str) -> bytes | None:
        """`event_of(entity_id)` encoded, written from the stored bytes without building
        the message; None as event_of. Parses to the same Event (the field order
        differs from a serialisation: principal comes before entity and offset)."""
        parts: list[bytes] = []
        if not self.write_events([entity_id], parts, b""):
            return None
        return b"".join(parts[2:])  # without the (empty) tag and the length

    def write_events(self, ids: Iterable[str], out: list[bytes], tag: bytes) -> int:
        """Append to `out`, for each of `ids` with an event (keep_events), the field `tag`
        holding that event as `event_bytes` writes it: the pieces, not joined, so a
        whole snapshot message is one join (repo_service.py). Returns how many."""
        envelopes, encoded, positions = self._envelopes, self._bytes, self._positions
        frames, topic_fields = self._event_frames, self._topic_fields
        written = 0
        for entity_id in ids:
            envelope = envelopes.get(entity_id)
            if envelope is None:
                continue
            value = encoded[entity_id]
            size = len(value)
            frame = frames.get(size)
            if frame is None:
                frame = any_field_prefix(_EVENT_ENTITY_TAG, self.entity_type.type_url, size)
                if len(frames) < _MAX_EVENT_FRAMES:
                    frames[size] = frame
            topic, partition, offset = positions[entity_id]
            position = topic_fields.get(topic)
            if position is None:
                position = topic_fields[topic] = length_delimited(b"\x0a", topic.encode())
            if partition:
                position += b"\x10" + varint(partition)
            if offset:
                position += b"\x18" + varint(offset)
            position_len = varint(len(position))
            total = len(envelope) + len(frame) + size + 1 + len(position_len) + len(position)
            out += (tag, varint(total), envelope, frame, value, _EVENT_OFFSET_TAG, position_len, position)
            written += 1
        return written

    def frozen(self) -> FrozenRepo:
        """What is stored now, for writing a snapshot over time: copies of the dicts (in C,
        ~0.1 s per 1M entities), which later batches do not change."""
        return FrozenRepo(self._bytes.copy(), self._positions.copy())

    # --- bulk reset (planned in myko/repo_snapshot.py) ----------------------
    def encodings(self) -> Mapping[str, bytes]:
        """id -> stored encoding: the repo's own dict, not a copy (read it before the next change)."""
        return self._bytes

    def decode_batch(self, encodings: Iterable[bytes]) -> Sequence[E]:
        """Entities of `encodings`, decoded in one parse (raises if one does not decode)."""
        return self._decode_batch(encodings)

    def watched(self) -> bool:
        return bool(self._changes.observers)

    def drops_orders(self, count: int) -> bool:
        """Whether a batch of `count` changes of this type drops its kept orders (Store._bulk_load)."""
        return bool(self._orders) and count >= max(BULK_EVENTS, len(self))

    def unbuild_orders(self) -> None:
        for order in self._orders.values():
            order.unbuild()

    def built_orders(self) -> list[KeptOrder[E]]:
        """The kept orders that follow every change now (built, not stopped)."""
        return [o for o in self._orders.values() if o.built and not o.broken]

    def index_keys(self, entities: Sequence[E]) -> list[list[Hashable]]:
        """Per declared index, the keys of `entities` (raises if a field does not read)."""
        return [index.keys(entities) for index in self._indexes.values()]

    def add_to_indexes(self, ids: Sequence[str], keys: Sequence[list[Hashable]]) -> None:
        """Add `ids` to each declared index under its `keys` (from `index_keys`; none: nothing)."""
        for index, of_index in zip(self._indexes.values(), keys, strict=False):
            index.add_keys(ids, of_index)

    def remove_from_indexes(self, ids: Sequence[str], keys: Sequence[list[Hashable]]) -> None:
        """Remove `ids` from each declared index, where they are under `keys` (as `add_to_indexes`)."""
        for index, of_index in zip(self._indexes.values(), keys, strict=False):
            for entity_id, key in zip(ids, of_index, strict=True):
                index.remove_key(entity_id, key)

    def replace_states(
        self,
        gone: Sequence[str],
        ids: Sequence[str],
        values: Sequence[bytes],
        fresh: dict[str, bytes] | None,
        positions: dict[str, tuple[str, int, int]],
    ) -> None:
        """Take a bulk reset's states (indexes and orders are the caller's): `gone` deleted,
        `ids` set to `values`, or, into an empty repo, `fresh` (the whole id -> encoding)
        kept as is; `positions` (kept) in place of every position, no envelopes."""
        encoded, cache = self._bytes, self._cache
        for entity_id in gone:
            del encoded[entity_id]
        if fresh is not None and not encoded:
            # A first load: the dict built from the snapshot is the state (nothing read the
            # empty one's identity: readers look `_bytes` up on the repo, as install_state relies on).
            self._bytes = fresh
        else:
            encoded.update(zip(ids, values, strict=True))
        if cache:
            for entity_id in chain(gone, ids):
                cache.pop(entity_id, None)
        self._envelopes.clear()
        self._positions = positions

    def __len__(self) -> int:
        return len(self._bytes)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._bytes

    # --- streams -----------------------------------------------------------
    @property
    def changes(self) -> Observable[Changes]:
        """Per applied batch: the ids of this type that changed and their new state.

        The new states are decoded once per batch and shared by every subscriber
        of that batch: treat them as read-only (the store keeps bytes, so a change
        to one cannot alter the store, only what other watches of the batch see)."""
        return self._changes

    def watch(
        self,
        where: Callable[[E], bool] | None = None,
        order_by: Callable[[E], Any] = by_id,
        *,
        equal: Mapping[str, Hashable] | None = None,
    ) -> EntityWatch[E]:
        """The full array of matching entities now, then again whenever it changes.

        `equal` selects by field values (dotted paths, e.g. {"zone_id": z}) from
        indexes, so starting the watch costs O(matches) instead of a scan of every
        entity; `where`, if given as well, filters those further. Maintained
        incrementally: a batch costs O(changed ids), plus a sort of the result
        when the result did change. `.windowed(spec)` of the returned watch
        emits one window of the order instead (myko/query_window.py). Each array
        is an `EntityArray` carrying the stored encodings, so encoding a result
        does not serialise the entities again.
        """
        return EntityWatch(self, where, order_by, dict(equal or {}))

    def watch_one(self, entity_id: str) -> Observable[E | None]:
        """The entity (or None) now, then on every change to it."""

        def subscribe(
            observer: abc.ObserverBase[E | None], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            observer.on_next(self.get(entity_id))

            def on_changes(changed: Changes) -> None:
                if entity_id in changed:
                    observer.on_next(changed[entity_id])

            return self._changes.subscribe(on_changes)

        return reactivex.create(subscribe)

    # --- reduction ---------------------------------------------------------
    def _apply(self, event: item_pb2.Event, entity: E | None = None) -> Any:
        """Reduce one event: the new state (None when deleted), or _UNCHANGED when it
        changes nothing (replay, stale, no-op).

        `entity` is the event's SET state when the caller has decoded it already.
        """
        offset = event.offset
        entity_id = event.id
        previous = self._positions.get(entity_id)
        if (
            previous is not None
            and previous[1] == offset.partition
            and previous[0] == offset.topic
            and offset.offset <= previous[2]
        ):
            return _UNCHANGED
        if event.op == SET:
            data = event.entity.value
            if entity is None:
                entity = self._decode(data)
            old = self._bytes.get(entity_id)
            self._remember(entity_id, event)
            # The same bytes are the same state (Myko writes deterministic encodings).
            if old == data:
                return _UNCHANGED
            if self._indexes or self._orders:
                old_entity = None if old is None else self._private(entity_id, old)
                for index in self._indexes.values():
                    if old_entity is not None:
                        index.remove(entity_id, old_entity)
                    index.add(entity_id, entity)
                for order in self._orders.values():
                    order.change(entity_id, old_entity, entity)
            self._bytes[entity_id] = data
            self._cache.pop(entity_id, None)
            return entity
        if event.op == DEL:
            self._envelopes.pop(entity_id, None)
            self._positions.pop(entity_id, None)
            gone = self._bytes.get(entity_id)
            if gone is None:
                return _UNCHANGED
            if self._indexes or self._orders:
                gone_entity = self._private(entity_id, gone)
                for index in self._indexes.values():
                    index.remove(entity_id, gone_entity)
                for order in self._orders.values():
                    order.change(entity_id, gone_entity, None)
            del self._bytes[entity_id]
            self._cache.pop(entity_id, None)
            return None
        return _UNCHANGED

    def _private(self, entity_id: str, data: bytes) -> E:
        """The stored state decoded for the store's own use (never handed out)."""
        cached = self._cache.get(entity_id)
        return cached if cached is not None else self._decode(data)

    def _remember(self, entity_id: str, event: item_pb2.Event) -> None:
        offset = event.offset
        topic = offset.topic
        # One str per topic, not one per entity (protobuf returns a new str on every read).
        topic = self._topics.setdefault(topic, topic)
        self._positions[entity_id] = (topic, offset.partition, offset.offset)
        if self._keep_events:
            self._envelopes[entity_id] = item_pb2.Event(
                op=event.op,
                type=event.type,
                id=event.id,
                tx=event.tx,
                ts=event.ts if event.HasField("ts") else None,
                source=event.source,
                principal=event.principal,
            ).SerializeToString()

    # --- checkpoints (myko/checkpoints.py) -----------------------------------
    def stored_state(
        self,
    ) -> tuple[dict[str, bytes], dict[str, tuple[str, int, int]], dict[str, bytes] | None]:
        """Copies of what is stored (encodings, positions, envelopes or None), for a checkpoint:
        dict copies, so a thread may write them while batches go on applying."""
        envelopes = self._envelopes.copy() if self._keep_events else None
        return self._bytes.copy(), self._positions.copy(), envelopes

    def install_state(
        self,
        encoded: dict[str, bytes],
        positions: dict[str, tuple[str, int, int]],
        envelopes: dict[str, bytes] | None,
    ) -> None:
        """Take a checkpoint's state (dicts the repo keeps) in place of an empty one;
        declared indexes are rebuilt over it. Watches see it as their first array."""
        if self._bytes:
            raise ValueError(f"{self.entity_type.name}: a checkpoint loads into an empty repo only")
        if self._keep_events and envelopes is None:
            raise ValueError(f"{self.entity_type.name}: this store keeps events, the checkpoint has none")
        self._bytes, self._positions = encoded, positions
        self._envelopes = envelopes if self._keep_events and envelopes is not None else {}
        for path in list(self._indexes):
            del self._indexes[path]
            self.declare_index(path)
        for order in self._orders.values():
            order.unbuild()  # sorted over the installed state at its next read

    def _forget_positions(self) -> None:
        self._envelopes.clear()
        self._positions.clear()

    def _notify(self, changed: Changes) -> None:
        self._changes.on_next(changed)


def _copy(entity: E) -> E:
    out = type(entity)()
    out.CopyFrom(entity)
    return out


def _pick(items: list[E], order: list[int]) -> list[E]:
    """items[k] for k in order (itemgetter does the loop in C)."""
    if len(order) < 2:
        return [items[k] for k in order]
    return list(operator.itemgetter(*order)(items))


def _is_declared(order_by: Callable[[Any], Any], repo: Repo[Any]) -> bool:
    try:
        return order_by in repo._orders
    except TypeError:  # an unhashable key object is never a declared order
        return False


# A selection under 1/32 of the entities is cheaper decoded and sorted than walked
# in a kept order of all of them (a decode ~3 us, a step of the walk ~40 ns).
_SMALL_SHARE = 32


class EntityWatch(Observable[list[E]]):
    """`Repo.watch`: an Observable of the full ordered array, which can also give one
    window of that order (`windowed`), maintained without re-sorting.

    With a declared order (`Repo.declare_order`, myko/kept_order.py) and no
    `where`, a selection of more than a few entities is served from the kept
    order: each array is the matching ids in that order and their stored bytes,
    its entities decoded only if something reads them (`EntityArray.deferred`).
    Declared orders break ties by id in every case; undeclared ones keep the
    order of equal keys as found in the store.
    """

    def __init__(
        self,
        repo: Repo[E],
        where: Callable[[E], bool] | None,
        order_by: Callable[[E], Any],
        equal: dict[str, Hashable],
    ) -> None:
        super().__init__(self._subscribe_all)
        self._repo = repo
        self._where = where
        self.order_by = order_by
        self._equal = equal
        self._getters = [(operator.attrgetter(path), value) for path, value in equal.items()]
        self._declared = _is_declared(order_by, repo)

    def _match(self, e: E) -> bool:
        return all(get(e) == value for get, value in self._getters) and (
            self._where is None or self._where(e)
        )

    def _matching(self) -> set[str] | None:
        """Ids selected by `equal` (a fresh set), or None when it selects every entity."""
        return self._repo._matching_ids(self._equal) if self._equal else None

    def _kept(self, matched: set[str] | None) -> KeptOrder[E] | None:
        """The kept order that serves this selection, or None (sort as undeclared)."""
        if not self._declared or self._where is not None:
            return None
        if matched is not None and len(matched) * _SMALL_SHARE < len(self._repo):
            return None
        return self._repo.kept_order(self.order_by)

    def _matches(self, selected: set[str] | None = None) -> tuple[list[str], list[E]]:
        """Ids and entities (decoded in one batch) of every match now; in store order, or
        by id for a declared order (so that its ties are by id)."""
        repo, where, wanted = self._repo, self._where, self._equal
        if selected is not None:
            ids = list(selected)
        else:
            ids = list(repo._matching_ids(wanted)) if wanted else list(repo._bytes)
        if not ids:
            return [], []  # nothing selected: nothing to decode
        if self._declared:
            ids.sort()
        encoded = repo._bytes
        entities = list(repo._decode_batch([encoded[i] for i in ids]))
        if where is None:
            return ids, entities
        kept = [(i, e) for i, e in zip(ids, entities, strict=True) if where(e)]
        return [i for i, _ in kept], [e for _, e in kept]

    def _current(self) -> dict[str, E]:
        ids, entities = self._matches()
        return dict(zip(ids, entities, strict=True))

    def _array(self, current: dict[str, E], order: list[str]) -> EntityArray[E]:
        encoded = self._repo._bytes
        return EntityArray(
            [current[i] for i in order], [encoded[i] for i in order], self._repo.entity_type.type_url
        )

    def _deferred(self, kept: KeptOrder[E], matched: set[str] | None) -> EntityArray[E]:
        """The matches in the kept order, as an array of their stored bytes."""
        repo = self._repo
        if matched is not None and len(matched) == len(repo):
            matched = None  # every entity matches: no filter to apply
        encodings = kept.encodings(matched)
        return EntityArray.deferred(encodings, repo.entity_type.type_url, repo._decode_batch)

    def _subscribe_all(
        self, observer: abc.ObserverBase[list[E]], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        matched = self._matching()
        kept = self._kept(matched)
        if kept is not None:
            on_changes = self._kept_updates(observer, kept, matched)
        else:
            on_changes = self._sorted_updates(observer, self._matches(matched))
        return self._repo._changes.subscribe(on_changes)

    def array_now(self) -> EntityArray[E]:
        """The array a subscription would emit first, with nothing subscribed: all a
        one-shot read (a Get) needs, without the cost of starting a live watch."""
        matched = self._matching()
        kept = self._kept(matched)
        if kept is not None:
            return self._deferred(kept, matched)
        ids, entities = self._matches(matched)
        return self._first_sorted(ids, entities, list(map(self.order_by, entities)))

    def _first_sorted(self, ids: list[str], entities: list[E], keys: list[Any]) -> EntityArray[E]:
        """The array of `ids` / `entities` in the order of their `keys`, with their stored bytes."""
        order = sorted(range(len(ids)), key=keys.__getitem__)
        encoded = self._repo._bytes
        return EntityArray(
            _pick(entities, order), [encoded[ids[k]] for k in order], self._repo.entity_type.type_url
        )

    def _kept_updates(
        self, observer: abc.ObserverBase[list[E]], kept: KeptOrder[E], matched: set[str] | None
    ) -> Callable[[Changes], None]:
        """Emit the first array from the kept order; the handler of later changes.

        A change costs O(changed) to update the matching ids, then a walk of the
        kept order (no key, no decode, no sort) when the result changed."""
        observer.on_next(self._deferred(kept, matched))
        match = self._match
        sorted_updates: Callable[[Changes], None] | None = None

        def on_changes(changed: Changes) -> None:
            nonlocal sorted_updates
            if sorted_updates is not None:
                sorted_updates(changed)
                return
            if matched is None:
                dirty = bool(changed)
            else:
                dirty = False
                for entity_id, entity in changed.items():
                    if entity is not None and match(entity):
                        matched.add(entity_id)
                        dirty = True
                    elif entity_id in matched:
                        matched.discard(entity_id)
                        dirty = True
            if not dirty:
                return
            if not kept.usable():
                # The order stopped (its key failed): sort from here on, as undeclared.
                sorted_updates = self._sorted_updates(observer, self._matches())
                return
            observer.on_next(self._deferred(kept, matched))

        return on_changes

    def _sorted_updates(
        self, observer: abc.ObserverBase[list[E]], first: tuple[list[str], list[E]]
    ) -> Callable[[Changes], None]:
        """Emit the first array sorted from `first` (ids, entities); the handler of later changes."""
        order_by, match, declared = self.order_by, self._match, self._declared
        ids, entities = first
        # The first array (all a Get ever needs) is sorted from plain lists; it carries
        # the stored encodings in its order, so encoding it serialises nothing.
        first_keys = list(map(order_by, entities))
        observer.on_next(self._first_sorted(ids, entities, first_keys))
        # A live watch keeps id -> entity and id -> sort key (a key computed once per
        # change of that entity), so a change costs O(changed) keys plus a sort. They
        # are built by the first change: a Get or a one-off snapshot never needs them.
        current: dict[str, E] = {}
        keys: dict[str, Any] = {}
        pending: list[Any] | None = [ids, entities, first_keys]
        del ids, entities, first_keys, first

        # Selecting by a field: only the changed entities with that field's value, and
        # those in the result now (they may have left it), can change the result.
        routed = next(iter(self._equal.items()), None)

        def on_changes(changed: Changes) -> None:
            nonlocal pending
            if pending is not None:
                current.update(zip(pending[0], pending[1], strict=True))
                keys.update(zip(pending[0], pending[2], strict=True))
                pending = None
            dirty = False
            relevant = None
            if routed is not None and isinstance(changed, ChangeBatch):
                relevant = changed.relevant(*routed, current)
            for entity_id, entity in changed.items() if relevant is None else relevant:
                if entity is not None and match(entity):
                    if current.get(entity_id) != entity:
                        current[entity_id] = entity
                        keys[entity_id] = order_by(entity)
                        dirty = True
                elif current.pop(entity_id, None) is not None:
                    del keys[entity_id]
                    dirty = True
            if dirty:
                # A declared order's ties are by id (the kept order's): ids first, then a stable sort.
                ordered = sorted(sorted(current) if declared else current, key=keys.__getitem__)
                observer.on_next(self._array(current, ordered))

        return on_changes

    def current(self) -> dict[str, E]:
        """id -> entity of every match now (a fresh dict the caller may keep)."""
        return self._current()

    def follow(self, on_changes: Callable[[Mapping[str, E | None]], None]) -> abc.DisposableBase:
        """Each applied batch of the repo: changed id -> the entity when it matches, else None."""
        match = self._match

        def relevant(changed: Changes) -> None:
            on_changes({i: (e if e is not None and match(e) else None) for i, e in changed.items()})

        return self._repo._changes.subscribe(relevant)

    def matches(self, upto: int) -> OrderedMatches[E] | KeptOrderMatches[E]:
        """The matches in this order, the first `upto` positions ready (for windows):
        from the kept order when it serves this selection, else sorted from the matches."""
        matched = self._matching()
        kept = self._kept(matched)
        if kept is None:
            return OrderedMatches(self._current(), self.order_by, upto=upto)
        repo = self._repo

        def decode(ids: list[str]) -> list[E]:
            encoded = repo._bytes
            return list(repo._decode_batch([encoded[i] for i in ids]))

        def fallback(held: int) -> OrderedMatches[E]:
            return OrderedMatches(self._current(), self.order_by, upto=held)

        return KeptOrderMatches(
            kept, set(repo._bytes) if matched is None else matched, decode, fallback, upto=upto
        )

    def ordered(self, *, on_idle: Callable[[SharedOrder[E]], None] | None = None) -> SharedOrder[E]:
        """This order, kept once for any number of windows over it (myko/query_window.py)."""
        return SharedOrder(self, on_idle=on_idle)

    def windowed(self, spec: WindowSpec, *, total: bool = True) -> Observable[WindowResult[E]]:
        """The window `spec` of this order (ties broken by id) now, then whenever it
        (or, with `total`, the number of matches) changes. A change that lands
        after the window costs a binary search and emits nothing."""
        return self.ordered().window(spec, total=total)


@dataclass(frozen=True)
class StoreBatch:
    """What one applied batch changed, across all types, and where it leaves the store."""

    events: Sequence[item_pb2.Event]
    watermark: Watermark


class Store:
    """Every Repo of an application, fed as one."""

    def __init__(
        self,
        entities: EntityRegistry,
        *,
        topic_prefix: str = "",
        quarantine: Quarantine | None = None,
        indexes: Mapping[str, Iterable[str]] | None = None,
        orders: Mapping[str, Iterable[Callable[[Any], Any]]] | None = None,
        keep_events: bool = True,
        cache_entities: int = DEFAULT_CACHE_ENTITIES,
    ) -> None:
        self.entities = entities
        self.keeps_events = keep_events
        # keep_events=False: no event_of()/snapshot() (only repo_svc serves those).
        # cache_entities: decoded entities kept per type (MYKO_REPO_CACHE_ENTITIES).
        self._repos: dict[str, Repo[Message]] = {
            et.name: Repo(et, keep_events=keep_events, cache_entities=cache_entities) for et in entities
        }
        # Declared indexes (entity name -> field paths), kept from the first event on.
        for type_name, paths in (indexes or {}).items():
            for path in sorted(paths):
                self.repo(type_name).declare_index(path)
        # Declared orders (entity name -> key functions), kept from the first event on.
        for type_name, keys in (orders or {}).items():
            for key in keys:
                self.repo(type_name).declare_order(key)
        self._topic_types = {et.topic(topic_prefix): et for et in entities}
        # Where records that are not Myko events go (apply_records); log-only by default.
        self.quarantine = quarantine or Quarantine("store")
        self._watermark = Watermark()
        self._batches: Subject[StoreBatch] = Subject()
        self._waiters = WatermarkWaiters()

    @property
    def watermark(self) -> Watermark:
        return self._watermark

    @property
    def topics(self) -> list[str]:
        return sorted(self._topic_types)

    @property
    def batches(self) -> Observable[StoreBatch]:
        return self._batches

    def of(self, cls: type[E]) -> Repo[E]:
        return self.repo(str(cls.DESCRIPTOR.full_name))  # type: ignore[return-value]

    def repo(self, type_name: str) -> Repo[Message]:
        repo = self._repos.get(type_name)
        if repo is None:
            raise KeyError(f"{type_name} is not a registered entity")
        return repo

    def apply_records(self, records: Iterable[RawRecord], watermark: Watermark) -> None:
        """Apply Kafka records of entity topics (others are ignored), decoding each on its own.

        A record that is not a sound event of its topic's type is quarantined;
        the rest of the batch applies as if it were not there.
        """
        decoded: list[tuple[item_pb2.Event, Message | None]] = []
        for r in records:
            entity_type = self._topic_types.get(r.topic)
            if entity_type is None:
                continue
            found = self.quarantine.decode(r, partial(decode_entity, entity_type=entity_type))
            if found is not None:
                decoded.append(found)
        self._apply_decoded(decoded, watermark)

    def apply_events(self, events: Iterable[item_pb2.Event], watermark: Watermark) -> None:
        self._apply_decoded([(ev, None) for ev in events], watermark)

    def _apply_decoded(
        self, events: Iterable[tuple[item_pb2.Event, Message | None]], watermark: Watermark
    ) -> None:
        changed: dict[str, ChangeBatch] = {}
        applied: list[item_pb2.Event] = []
        events = list(events)
        if len(events) >= BULK_EVENTS:
            self._bulk_load(events)
        for ev, entity in events:
            repo = self._repos.get(ev.type)
            if repo is None:
                continue
            try:
                state = repo._apply(ev, entity)
            except Exception:
                log.exception("cannot reduce %s %s; skipped", ev.type, ev.id)
                continue
            if state is not _UNCHANGED:
                batch = changed.get(ev.type)
                if batch is None:
                    batch = changed[ev.type] = ChangeBatch()
                batch[ev.id] = state
                applied.append(ev)
        self._watermark = self._watermark.advanced(watermark.positions)
        for type_name in changed:
            for order in self._repos[type_name]._orders.values():
                order.settle()
        for type_name, ids in changed.items():
            self._repos[type_name]._notify(ids)
        self._batches.on_next(StoreBatch(applied, self._watermark))
        self._waiters.advance(self._watermark)

    def _bulk_load(self, events: list[tuple[item_pb2.Event, Message | None]]) -> None:
        """Before a batch that at least doubles a type of BULK_EVENTS or more (a snapshot, a
        catch-up): its kept orders are dropped and sorted once at their next read, so the
        load computes no key (query_svc's start-up costs nothing more)."""
        counts = Counter(ev.type for ev, _ in events)
        for type_name, count in counts.items():
            repo = self._repos.get(type_name)
            if repo is not None and repo.drops_orders(count):
                repo.unbuild_orders()

    async def wait_for(self, needed: Mapping[TopicPartition, int], *, timeout_s: float) -> None:
        """Return once the store reflects every position in `needed`."""
        await self._waiters.wait(self._watermark, needed, timeout_s=timeout_s)

    def reset(self, events: Sequence[item_pb2.Event], watermark: Watermark) -> None:
        """Replace the whole state by a snapshot, emitting only the differences.

        A snapshot of SETs (what repo_svc sends) into a store without events is loaded in
        bulk (`load_snapshot`); anything else (DELs, an id twice, envelopes to keep) is
        applied event by event. Both leave the same state and emit the same changes."""
        columns = None if self.keeps_events else columns_of(events)
        if columns is None or not self._load(columns, watermark, events):
            self._reset_by_events(events, watermark)

    def load_snapshot(self, columns: Mapping[str, TypeSnapshot], watermark: Watermark) -> None:
        """`reset` from a snapshot given as columns per entity type (myko/repo_feed.py):
        no Event per entity. Types absent from `columns` are emptied."""
        if self.keeps_events:
            raise ValueError("a store that keeps events resets from events (they carry the envelopes)")
        if not self._load(columns, watermark, None):
            self._reset_by_events(events_of(columns, self.entities), watermark)

    def _load(
        self,
        columns: Mapping[str, TypeSnapshot],
        watermark: Watermark,
        events: Sequence[item_pb2.Event] | None,
    ) -> bool:
        """The bulk reset (myko/repo_snapshot.py): a plan per type, made before the store
        changes, then applied. False, having changed nothing (kept orders aside: dropped
        as the event path would), when the event path must run instead."""
        plans = plan_reset(self._repos, columns)
        if plans is None:
            return False
        changed = apply_plans(plans, columns)
        self._watermark = Watermark().advanced(watermark.positions)
        for type_name in changed:
            for order in self._repos[type_name]._orders.values():
                order.settle()
        for type_name, plan in changed.items():
            repo = self._repos[type_name]
            # Nobody to tell when nothing watches the type; a watch started by an earlier
            # notification (after the plan was made) gets the batch, as in the event path.
            if plan.watched or repo.watched():
                batch = ChangeBatch()
                batch.update(plan.changes())
                repo._notify(batch)
        # A mirror has no batch observer: the applied events are built only for someone to read.
        applied = applied_events(plans, columns, events, self.entities) if self._batches.observers else []
        self._batches.on_next(StoreBatch(applied, self._watermark))
        self._waiters.advance(self._watermark)
        return True

    def _reset_by_events(self, events: Sequence[item_pb2.Event], watermark: Watermark) -> None:
        """The reset event by event: synthetic DELs for what the snapshot lacks, then its events."""
        present: dict[str, set[str]] = {name: set() for name in self._repos}
        for ev in events:
            present.setdefault(ev.type, set()).add(ev.id)
        gone = []
        for name, repo in self._repos.items():
            for entity_id in repo.ids():
                if entity_id not in present[name]:
                    gone.append(item_pb2.Event(op=DEL, type=name, id=entity_id))
        for repo in self._repos.values():
            repo._forget_positions()
        self._watermark = Watermark()
        self.apply_events([*gone, *events], watermark)

    def snapshot(self, types: Iterable[str] | None = None) -> list[item_pb2.Event]:
        names = list(types) if types else list(self._repos)
        out: list[item_pb2.Event] = []
        for name in names:
            repo = self._repos[name]
            out.extend(ev for i in repo.ids() if (ev := repo.event_of(i)) is not None)
        return out

    def subscribe_batches(self, fn: Callable[[StoreBatch], None]) -> Disposable:
        return self._batches.subscribe(fn)  # type: ignore[return-value]
