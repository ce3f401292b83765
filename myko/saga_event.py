"""`SagaEvent`: what a saga handler sees of one entity event.

A saga handler is a reactive pipeline from events to commands:

    @app.saga("cascade-zone-delete", sources=[Zone])
    def cascade(events: Observable[SagaEvent], repos: Store) -> Observable[Message]:
        return events.pipe(
            ops.filter(lambda e: e.is_delete_of(Zone)),
            ops.flat_map(lambda e: [DeleteTarget(id=t.item.id) for t in targets_of(repos, e.id)]),
        )

The runtime (myko/saga.py) builds the pipeline once per event, with `events`
emitting that one event and completing; every command the pipeline emits
before it completes is the effect of that event. `repos` is read-only current
state, at least as new as the event (see docs/sagas.md).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.message import Message

from myko.events import DEL, SET

E = TypeVar("E", bound=Message)

# Ids and txs a saga derives from an event; distinct from CommandContext's namespace.
SAGA_NAMESPACE = uuid.UUID("6d796b6f-0000-4000-8000-000000000002")


@dataclass(frozen=True, slots=True)
class Position:
    """Where an event sits in Kafka: the identity of the event for the saga."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


@dataclass(frozen=True, slots=True)
class SagaEvent:
    saga: str
    # myko.v1.EventOp: SET or DEL (see is_set / is_delete).
    op: int
    # The entity class declared with `app.entity`, and its id.
    entity_class: type[Message]
    id: str
    # The new state for SET; None for DEL (a tombstone carries no state).
    entity: Message | None
    # The transaction of the command that caused the event.
    tx: str
    ts_ns: int
    source: str
    position: Position
    # Subject of the principal whose command caused the event (the myko-principal
    # header); the saga's own commands run as saga_svc's identity, not as this one.
    issued_by: str = ""

    @property
    def type_name(self) -> str:
        return str(self.entity_class.DESCRIPTOR.full_name)

    @property
    def is_set(self) -> bool:
        return bool(self.op == SET)

    @property
    def is_delete(self) -> bool:
        return bool(self.op == DEL)

    @property
    def is_created(self) -> bool:
        """A SET that made the entity exist (version 1)."""
        return self.entity is not None and int(self.entity.item.version) == 1  # type: ignore[attr-defined]

    def is_set_of(self, cls: type[Message]) -> bool:
        return self.is_set and self.entity_class is cls

    def is_delete_of(self, cls: type[Message]) -> bool:
        return self.is_delete and self.entity_class is cls

    def entity_as(self, cls: type[E]) -> E:
        """The new state as `cls`; raises TypeError for a DEL or another type."""
        if self.entity is None or not isinstance(self.entity, cls):
            raise TypeError(f"{self} carries no {cls.DESCRIPTOR.full_name}")
        return self.entity

    def new_id(self, salt: str = "") -> str:
        """An id derived from this event: the same on every redelivery of it."""
        return str(uuid.uuid5(SAGA_NAMESPACE, f"id/{self.saga}/{self.position}/{salt}"))

    def __str__(self) -> str:
        op = "SET" if self.is_set else "DEL"
        return f"{op} {self.type_name} {self.id} at {self.position}"
