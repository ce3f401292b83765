"""Relations between entities, declared instead of written as sagas.

Two declarations (docs/sagas.md, "Relations"):

- A **reference**: an entity's string field holding another entity's id,
  marked in the `.proto`:

      string zone_id = 7 [(myko.v1.ref) = { entity: "targets.v1.Zone", on_delete: ON_DELETE_CASCADE }];

  Every command that writes a Target with a non-empty `zone_id` naming no
  existing Zone is rejected (FAILED_PRECONDITION), in the same commit, so no
  new Target can point at a deleted Zone. With `ON_DELETE_CASCADE`, deleting a
  Zone deletes the Targets that refer to it.

- An **ensured child**: `app.ensure(Target, for_each=Zone, build=perimeter,
  name="zone-perimeter")` gives every Zone created the Target `perimeter(zone)`.

Both run as sagas on the ordinary saga runtime (myko/saga.py): a consumer
group per relation, the store fenced to the event, each command sent with a
tx derived from the event and committed only after it is acknowledged. So a
redelivered event has no second effect, as for a hand-written saga. The sagas
send two framework commands, `myko.v1.CascadeDelete` and `myko.v1.EnsureChild`
(proto/myko/v1/relations.proto), whose handlers App registers: they act on
command_svc's current state and only ever do what the declaration says
(delete children of an owner that is gone; create the one child of an owner
that exists), so a client sending one itself can do no more than the saga.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import reactivex
from google.protobuf.message import Message
from reactivex import Observable
from reactivex import operators as ops

from myko.command_context import CommandContext
from myko.contract import Reference, references
from myko.entities import EntityRegistry
from myko.errors import ConfigError, InvalidArgument, Rejected, echo
from myko.repo import Store
from myko.saga_event import SagaEvent
from myko.v1 import item_pb2, relations_pb2

P = TypeVar("P", bound=Message)  # the owner (parent)
C = TypeVar("C", bound=Message)  # the child

# Children deleted per CascadeDelete command: bounds the command's size (ids
# are at most a few hundred bytes) and the Kafka transaction it becomes.
CASCADE_BATCH = 500

# Ids of ensured children; distinct from the tx- and event-derived namespaces.
ENSURE_NAMESPACE = uuid.UUID("6d796b6f-0000-4000-8000-000000000003")

SagaHandler = Callable[[Observable[SagaEvent], Store], Observable[Message]]


@dataclass(frozen=True)
class Ensure(Generic[P, C]):
    """`app.ensure(child, for_each=owner, build=..., name=...)`: each owner created gets one child."""

    name: str
    child: type[C]
    owner: type[P]
    build: Callable[[P], C]

    def id_for(self, owner_id: str) -> str:
        """The id of the child ensured for this owner: the same on every run."""
        return str(uuid.uuid5(ENSURE_NAMESPACE, f"{self.name}/{owner_id}"))


@dataclass(frozen=True)
class RelationSaga:
    name: str
    handler: SagaHandler
    sources: tuple[type[Message], ...]


@dataclass(frozen=True)
class _Cascade:
    name: str
    ref: Reference
    owner: type[Message]


class Relations:
    """The relations of one App, resolved against its entities (ConfigError when inconsistent)."""

    def __init__(self, entities: EntityRegistry, ensures: Sequence[Ensure[Any, Any]]) -> None:
        self._refs: dict[str, list[tuple[Reference, type[Message]]]] = {}
        self._cascades: dict[str, _Cascade] = {}
        for et in entities:
            for ref in references(et.cls):
                target = entities.get(ref.target)
                if target is None:
                    raise ConfigError(
                        f"{ref.name} refers to {ref.target}, which is not an entity of this app "
                        f"(declare it with app.entity)"
                    )
                self._refs.setdefault(et.name, []).append((ref, target.cls))
                if ref.cascade:
                    name = f"cascade.{ref.name}"
                    self._cascades[name] = _Cascade(name, ref, target.cls)
        self._ensures: dict[str, Ensure[Any, Any]] = {}
        for ensure in ensures:
            for cls in (ensure.child, ensure.owner):
                if entities.get(str(cls.DESCRIPTOR.full_name)) is None:
                    raise ConfigError(
                        f"ensure {ensure.name!r}: {cls.DESCRIPTOR.full_name} is not an entity of this app"
                    )
            self._ensures[ensure.name] = ensure

    @property
    def empty(self) -> bool:
        return not self._cascades and not self._ensures

    @property
    def has_references(self) -> bool:
        return bool(self._refs)

    # --- reference check (every command, after its handler) ----------------
    def check_references(self, ctx: CommandContext) -> None:
        """Reject a command writing an entity whose reference names nothing that exists."""
        for (type_name, _), entity in list(ctx.writes.items()):
            if entity is None:
                continue
            for ref, target in self._refs.get(type_name, ()):
                value: str = getattr(entity, ref.field)
                if value and ctx.get(target, value) is None:
                    raise Rejected(f"{ref.field}: {ref.target} {value} does not exist")

    # --- sagas ---------------------------------------------------------------
    def sagas(self) -> list[RelationSaga]:
        out = [RelationSaga(c.name, _cascade_saga(c), (c.owner,)) for c in self._cascades.values()]
        out += [RelationSaga(e.name, _ensure_saga(e), (e.owner,)) for e in self._ensures.values()]
        return out

    # --- the commands the sagas send ------------------------------------------
    def cascade_delete(self, cmd: relations_pb2.CascadeDelete, ctx: CommandContext) -> None:
        cascade = self._cascades.get(cmd.relation)
        if cascade is None:
            raise InvalidArgument("relation", f"no cascading reference named {echo(cmd.relation)}")
        if not cmd.owner_id:
            raise InvalidArgument("owner_id", "must not be empty")
        if len(cmd.ids) > CASCADE_BATCH:
            raise InvalidArgument("ids", f"{len(cmd.ids)} ids; at most {CASCADE_BATCH} per command")
        if ctx.get(cascade.owner, cmd.owner_id) is not None:
            return  # the owner exists (again): nothing refers to a deleted one
        child = cascade.ref.entity
        for child_id in cmd.ids:
            found = ctx.get(child, child_id)
            # Deleted already, or moved to another owner since the saga looked.
            if found is not None and getattr(found, cascade.ref.field) == cmd.owner_id:
                ctx.delete(child, child_id)

    def ensure_child(self, cmd: relations_pb2.EnsureChild, ctx: CommandContext) -> None:
        ensure = self._ensures.get(cmd.relation)
        if ensure is None:
            raise InvalidArgument("relation", f"no ensured child named {echo(cmd.relation)}")
        if not cmd.owner_id:
            raise InvalidArgument("owner_id", "must not be empty")
        owner = ctx.get(ensure.owner, cmd.owner_id)
        if owner is None:
            return  # deleted again before the saga got here: nothing to create it for
        child_id = ensure.id_for(cmd.owner_id)
        if ctx.get(ensure.child, child_id) is not None:
            return
        child = ensure.build(owner)
        if not isinstance(child, ensure.child):
            raise ConfigError(
                f"ensure {ensure.name!r}: build returned {type(child).__name__}, "
                f"not {ensure.child.DESCRIPTOR.full_name}"
            )
        item: item_pb2.MItem = child.item
        if item.id and item.id != child_id:
            raise ConfigError(f"ensure {ensure.name!r}: build must leave item.id empty (Myko sets it)")
        item.id = child_id
        ctx.set(child)


def _cascade_saga(cascade: _Cascade) -> SagaHandler:
    ref = cascade.ref

    def saga(events: Observable[SagaEvent], repos: Store) -> Observable[Message]:
        def deletes(event: SagaEvent) -> Observable[Message]:
            # The runtime has brought `repos` up to everything committed before
            # the owner's delete, and the reference check refuses children of a
            # missing owner after it: this list is complete.
            # From the repo's index on the field: no scan of every child.
            owned = [c.item.id for c in repos.of(ref.entity).find({ref.field: event.id})]  # type: ignore[attr-defined]
            return reactivex.from_iterable(
                relations_pb2.CascadeDelete(relation=cascade.name, owner_id=event.id, ids=batch)
                for batch in _batches(owned, CASCADE_BATCH)
            )

        def owner_deleted(event: SagaEvent) -> bool:
            return event.is_delete_of(cascade.owner)

        return events.pipe(ops.filter(owner_deleted), ops.flat_map(deletes))

    return saga


def _ensure_saga(ensure: Ensure[Any, Any]) -> SagaHandler:
    def saga(events: Observable[SagaEvent], repos: Store) -> Observable[Message]:
        def owner_created(event: SagaEvent) -> bool:
            return event.is_set_of(ensure.owner) and event.is_created

        def command(event: SagaEvent) -> Message:
            return relations_pb2.EnsureChild(relation=ensure.name, owner_id=event.id)

        return events.pipe(ops.filter(owner_created), ops.map(command))

    return saga


def _batches(ids: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
