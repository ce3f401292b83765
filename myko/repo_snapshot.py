"""A repo's state as snapshot columns, both ways, and the bulk reset that loads them.

repo_svc writes a subscriber's snapshot from `FrozenRepo`s (myko/repo_service.py);
query_svc and report_svc gather it into a `TypeSnapshot` per type (myko/repo_feed.py)
and `Store.load_snapshot` loads those in bulk: a `ResetPlan` per Repo works out the
differences to the snapshot with a few passes in C and decodes only what changed, and
the store changes only once every plan is made. The result, and what watches get, is
that of applying the snapshot event by event (`Store.reset`'s other path).
docs/benchmarks.md (2026-11-30, perf-qstart) has the figures.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, compress, filterfalse
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2

from myko.entities import EntityRegistry
from myko.events import DEL, SET
from myko.kept_order import KeptOrder
from myko.v1 import item_pb2

if TYPE_CHECKING:
    from myko.repo import Repo

log = logging.getLogger(__name__)

_first, _second, _third = operator.itemgetter(0), operator.itemgetter(1), operator.itemgetter(2)
# Entities decoded per batch by a bulk reset (bounds the decoded entities alive at once
# when nothing needs to keep them: a load with no watch and no built kept order).
_DECODE_BATCH = 50_000


@dataclass
class TypeSnapshot:
    """One entity type's part of a snapshot as columns: the i-th entity has the id
    ids[i], is stored as values[i] (its encoding) and was written at positions[i]
    (topic, partition, offset)."""

    ids: list[str]
    values: list[bytes]
    positions: list[tuple[str, int, int]]


@dataclass(frozen=True)
class FrozenRepo:
    """A repo's encodings and positions at one moment (`Repo.frozen`)."""

    encoded: dict[str, bytes]
    positions: dict[str, tuple[str, int, int]]

    def ids(self) -> list[str]:
        return list(self.encoded)

    def encodings(self, ids: list[str]) -> list[bytes]:
        return list(map(self.encoded.__getitem__, ids))

    def columns(
        self, ids: list[str], values: list[bytes]
    ) -> list[tuple[str, list[str], list[bytes], list[int], list[int]]]:
        """`ids` (and their `encodings`) as snapshot columns, one group per topic (one, as
        written by Myko): (topic, ids, encodings, partitions, offsets); gathered in C."""
        if not ids:
            return []
        held = list(map(self.positions.__getitem__, ids))
        topics = list(map(_first, held))
        partitions = list(map(_second, held))
        offsets = list(map(_third, held))
        if topics.count(topics[0]) == len(topics):
            return [(topics[0], ids, values, partitions, offsets)]
        groups: dict[str, tuple[list[str], list[bytes], list[int], list[int]]] = {}
        for entity_id, value, topic, partition, offset in zip(
            ids, values, topics, partitions, offsets, strict=True
        ):
            group = groups.setdefault(topic, ([], [], [], []))
            group[0].append(entity_id)
            group[1].append(value)
            group[2].append(partition)
            group[3].append(offset)
        return [(topic, *group) for topic, group in groups.items()]


def columns_of(events: Iterable[item_pb2.Event]) -> dict[str, TypeSnapshot] | None:
    """A snapshot of SET events as columns per type; None when one is not a SET."""
    out: dict[str, TypeSnapshot] = {}
    topics: dict[str, str] = {}
    for ev in events:
        if ev.op != SET:
            return None
        part = out.get(ev.type)
        if part is None:
            part = out[ev.type] = TypeSnapshot([], [], [])
        offset = ev.offset
        topic = offset.topic
        part.ids.append(ev.id)
        part.values.append(ev.entity.value)
        part.positions.append((topics.setdefault(topic, topic), offset.partition, offset.offset))
    return out


def events_of(columns: Mapping[str, TypeSnapshot], entities: EntityRegistry) -> list[item_pb2.Event]:
    """The SET events a snapshot in columns stands for (the event path's input)."""
    out = []
    for name, part in columns.items():
        entity_type = entities.get(name)
        type_url = entity_type.type_url if entity_type is not None else ""
        for entity_id, value, (topic, partition, offset) in zip(
            part.ids, part.values, part.positions, strict=True
        ):
            out.append(
                item_pb2.Event(
                    op=SET,
                    type=name,
                    id=entity_id,
                    entity=any_pb2.Any(type_url=type_url, value=value),
                    offset=item_pb2.Offset(topic=topic, partition=partition, offset=offset),
                )
            )
    return out


def plan_reset(repos: Mapping[str, Repo[Any]], columns: Mapping[str, TypeSnapshot]) -> list[ResetPlan] | None:
    """A plan per repo (a type absent from `columns` is emptied), or None when the event
    path must run instead: an id twice in one type, or a declared index whose field
    cannot be read. Changes nothing (kept orders aside: dropped as the event path would)."""
    plans = []
    for name, repo in repos.items():
        part = columns.get(name)
        plan = ResetPlan.of(repo, part if part is not None else TypeSnapshot([], [], []))
        if plan is None:
            return None
        plans.append(plan)
    return plans


def apply_plans(plans: Iterable[ResetPlan], columns: Mapping[str, TypeSnapshot]) -> dict[str, ResetPlan]:
    """Change the repos; type name -> plan of each repo that changed, in the order the event
    path notifies them: types with deletions (its synthetic DELs come first, in the store's
    order), then the others as they come in the snapshot (from events whose types
    interleave: by each type's first event, changed or not)."""
    changed = {plan.repo.entity_type.name: plan for plan in plans if plan.apply()}
    names = [name for name, plan in changed.items() if plan.gone]
    names += [name for name in columns if name in changed and name not in names]
    return {name: changed[name] for name in names}


def applied_events(
    plans: Iterable[ResetPlan],
    columns: Mapping[str, TypeSnapshot],
    events: Sequence[item_pb2.Event] | None,
    entities: EntityRegistry,
) -> list[item_pb2.Event]:
    """The events the reset applied, as the event path's `StoreBatch` lists them: the DELs of
    what the snapshot lacks, then the SETs that changed something (`events` is the snapshot
    as events when the reset had them, else they are made from `columns`)."""
    plans = list(plans)
    applied = [ev for plan in plans for ev in plan.gone_events()]
    kept = {plan.repo.entity_type.name: set(plan.changed_ids) for plan in plans}
    source = events if events is not None else events_of(columns, entities)
    applied += [ev for ev in source if ev.op == SET and ev.id in kept.get(ev.type, ())]
    return applied


class ResetPlan:
    """What a bulk reset does to one Repo, worked out before anything changes (`of`),
    then done (`apply`): the event path's result, without an Event per entity."""

    def __init__(self, repo: Repo[Any]) -> None:
        self.repo = repo
        self.gone: list[str] = []
        self.gone_entities: list[Any] = []
        self.changed_ids: list[str] = []
        self.changed_values: list[bytes] = []
        self.new_entities: list[Any] | None = None
        # ids of changed_ids stored before (their old state leaves indexes and orders).
        self.replaced: list[str] = []
        self.replaced_entities: list[Any] = []
        # Per declared index, the keys of new_entities, replaced_entities, gone_entities.
        self.new_keys: list[list[Hashable]] = []
        self.replaced_keys: list[list[Hashable]] = []
        self.gone_keys: list[list[Hashable]] = []
        self.positions: dict[str, tuple[str, int, int]] = {}
        # The whole new id -> encoding, when the repo was empty (a first load).
        self.fresh: dict[str, bytes] | None = None
        self.unbuild = False
        self.orders: list[KeptOrder[Any]] = []
        self.watched = False

    @classmethod
    def of(cls, repo: Repo[Any], part: TypeSnapshot) -> ResetPlan | None:
        plan = cls(repo)
        ids, values = part.ids, part.values
        fresh = dict(zip(ids, values, strict=True))
        if len(fresh) != len(ids):
            return None  # an id twice: the event path keeps the first position's rules
        old = repo.encodings()
        if old:
            plan.gone = list(filterfalse(fresh.__contains__, old))
            differs = list(map(operator.ne, map(old.get, ids), values))
            plan.changed_ids = list(compress(ids, differs))
            plan.changed_values = list(compress(values, differs))
        else:
            plan.changed_ids, plan.changed_values = list(ids), list(values)
            plan.fresh = fresh  # the new state whole: taken as is (bad entities aside)
        # The event path drops the kept orders before a batch this large (Store._bulk_load).
        plan.unbuild = repo.drops_orders(len(plan.gone) + len(ids))
        plan.orders = [] if plan.unbuild else repo.built_orders()
        plan.watched = repo.watched()
        # One (empty) list of keys per declared index.
        plan.new_keys = repo.index_keys([])
        keep_new = plan.watched or bool(plan.orders)
        bad: set[str] = set()
        if plan.new_keys or keep_new:
            new_entities: list[Any] = []
            for start in range(0, len(plan.changed_ids), _DECODE_BATCH):
                chunk_ids = plan.changed_ids[start : start + _DECODE_BATCH]
                chunk = _decode_each(repo, chunk_ids, plan.changed_values[start : start + _DECODE_BATCH], bad)
                try:
                    for keys, more in zip(plan.new_keys, repo.index_keys(chunk), strict=True):
                        keys += more
                except Exception:
                    return None  # an index whose field does not read: the event path logs each
                if keep_new:
                    new_entities += chunk
            if keep_new:
                plan.new_entities = new_entities
        else:
            # Nothing reads the new states: each is decoded only to check it is one.
            for start in range(0, len(plan.changed_ids), _DECODE_BATCH):
                _decode_each(
                    repo,
                    plan.changed_ids[start : start + _DECODE_BATCH],
                    plan.changed_values[start : start + _DECODE_BATCH],
                    bad,
                )
        if old and (plan.new_keys or plan.orders):
            plan.replaced = [i for i in plan.changed_ids if i in old and i not in bad]
            plan.replaced_entities = list(repo.decode_batch([old[i] for i in plan.replaced]))
            plan.gone_entities = list(repo.decode_batch([old[i] for i in plan.gone]))
            try:
                plan.replaced_keys = repo.index_keys(plan.replaced_entities)
                plan.gone_keys = repo.index_keys(plan.gone_entities)
            except Exception:
                return None
        if bad:
            # An encoding that does not decode is skipped, as the event path skips it: its
            # old state stays, without a position (the keys and entities lack it already).
            keep = [i not in bad for i in plan.changed_ids]
            plan.changed_ids = list(compress(plan.changed_ids, keep))
            plan.changed_values = list(compress(plan.changed_values, keep))
        plan.positions = dict(zip(ids, part.positions, strict=True))
        for entity_id in bad:
            del plan.positions[entity_id]
            if plan.fresh is not None:
                del plan.fresh[entity_id]
        return plan

    def apply(self) -> bool:
        """Change the repo; False if nothing changed."""
        repo = self.repo
        if self.unbuild:
            repo.unbuild_orders()
        repo.remove_from_indexes(self.gone, self.gone_keys)
        repo.remove_from_indexes(self.replaced, self.replaced_keys)
        if self.orders:
            old_of = dict(zip(self.replaced, self.replaced_entities, strict=True))
            gone_of = dict(zip(self.gone, self.gone_entities, strict=True))
            new_entities = self.new_entities or []
            for order in self.orders:
                for entity_id in self.gone:
                    order.change(entity_id, gone_of[entity_id], None)
                for entity_id, entity in zip(self.changed_ids, new_entities, strict=True):
                    order.change(entity_id, old_of.get(entity_id), entity)
        repo.replace_states(self.gone, self.changed_ids, self.changed_values, self.fresh, self.positions)
        repo.add_to_indexes(self.changed_ids, self.new_keys)
        return bool(self.gone or self.changed_ids)

    def changes(self) -> Iterator[tuple[str, Any]]:
        """What the repo's watches get (id -> new entity, or None when deleted): the entities
        decoded by the plan when it kept them (something watched), else decoded now."""
        entities = self.new_entities
        if entities is None:
            entities = list(self.repo.decode_batch(self.changed_values))
        return chain(dict.fromkeys(self.gone).items(), zip(self.changed_ids, entities, strict=True))

    def gone_events(self) -> list[item_pb2.Event]:
        name = self.repo.entity_type.name
        return [item_pb2.Event(op=DEL, type=name, id=entity_id) for entity_id in self.gone]


def _decode_each(repo: Repo[Any], ids: list[str], values: list[bytes], bad: set[str]) -> list[Any]:
    """The entities of `values`, decoded in one batch; if that fails, one by one, the ids of
    those that do not decode added to `bad` (and left out), each logged as the event path does."""
    try:
        return list(repo.decode_batch(values))
    except Exception:
        pass
    out = []
    decode = repo.entity_type.decode
    for entity_id, value in zip(ids, values, strict=True):
        try:
            out.append(decode(value))
        except Exception:
            log.exception("cannot reduce %s %s; skipped", repo.entity_type.name, entity_id)
            bad.add(entity_id)
    return out
