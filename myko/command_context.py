"""What a command handler sees: reads of current state and the writes it proposes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import TypeVar, cast

from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from myko import input_rules
from myko.conflicts import ChangeTracker, Key
from myko.errors import InvalidArgument, LimitExceeded
from myko.events import del_event, set_event
from myko.principal import ANONYMOUS, Principal
from myko.repo import Store
from myko.v1 import item_pb2

E = TypeVar("E", bound=Message)

# Ids derived from a tx are stable across retries of the same tx.
ID_NAMESPACE = uuid.UUID("6d796b6f-0000-4000-8000-000000000001")


class CommandContext:
    def __init__(
        self,
        *,
        tx: str,
        store: Store,
        tracker: ChangeTracker,
        source: str,
        now: timestamp_pb2.Timestamp | None = None,
        overlay: Mapping[Key, Message | None] | None = None,
        max_result_bytes: int | None = None,
        principal: Principal = ANONYMOUS,
    ) -> None:
        self.tx = tx
        self.source = source
        # Who sent the command (authorized for it already); its subject goes on every event.
        self.principal = principal
        self.now = now or _now()
        self._store = store
        self._tracker = tracker
        # Writes accepted earlier in the same commit batch, not yet in the store.
        self._overlay = overlay or {}
        self.reads: dict[Key, int] = {}
        self.scans: dict[str, int] = {}
        # (type, id) -> new entity or None for delete, in write order
        self._writes: dict[Key, Message | None] = {}
        self._existed: set[Key] = set()
        # A handler writing more than a result may hold is stopped at the write that
        # crosses the limit, not after building the rest (CommandBus checks exactly later).
        self._max_result_bytes = max_result_bytes
        self._least_bytes: dict[Key, int] = {}
        self._least_total = 0

    # --- reads -------------------------------------------------------------
    def get(self, cls: type[E], entity_id: str) -> E | None:
        """Current state of one entity, including this command's own writes."""
        key = (_name(cls), entity_id)
        if key in self._writes:
            return self._writes[key]  # type: ignore[return-value]
        self.reads.setdefault(key, self._tracker.seq)
        found = self._overlay[key] if key in self._overlay else self._store.of(cls).get(entity_id)
        return _copy(found) if found is not None else None  # type: ignore[return-value]

    def find(self, cls: type[E], where: Callable[[E], bool]) -> list[E]:
        """Entities of a type matching `where`; any change to the type invalidates it."""
        name = _name(cls)
        self.scans.setdefault(name, self._tracker.seq)
        found: dict[str, Message] = {
            e.item.id: _copy(e)  # type: ignore[attr-defined]
            for e in self._store.of(cls).filter(where)
        }
        for (t, i), w in [*self._overlay.items(), *self._writes.items()]:
            if t == name:
                if w is not None and where(cast(E, w)):
                    found[i] = w
                else:
                    found.pop(i, None)
        return [cast(E, e) for e in found.values()]

    # --- writes ------------------------------------------------------------
    def set(self, entity: E) -> E:
        """Write the whole new state of an entity; Myko fills its MItem."""
        name = _name(type(entity))
        if self._store.entities.get(name) is None:
            raise InvalidArgument("entity", f"{name} is not a registered entity")
        item: item_pb2.MItem = entity.item  # type: ignore[attr-defined]
        input_rules.entity_id(item.id, "id")
        current = self.get(type(entity), item.id)
        new = _copy(entity)
        meta: item_pb2.MItem = new.item  # type: ignore[attr-defined]
        meta.type = name
        meta.updated_tx = self.tx
        meta.updated_at.CopyFrom(self.now)
        if current is None:
            meta.created_tx = self.tx
            meta.created_at.CopyFrom(self.now)
            meta.version = 1
        else:
            old: item_pb2.MItem = current.item  # type: ignore[attr-defined]
            meta.created_tx = old.created_tx
            meta.created_at.CopyFrom(old.created_at)
            meta.version = old.version + (0 if key_written(self, name, item.id) else 1)
        key = (name, item.id)
        if current is not None and key not in self._writes:
            self._existed.add(key)
        self._writes[key] = new
        self._count(key, new.ByteSize())
        return new

    def delete(self, cls: type[Message], entity_id: str) -> bool:
        """Delete an entity; False (and no event) when it does not exist."""
        key = (_name(cls), entity_id)
        if key in self._writes and key not in self._existed:
            # Created by this very command: deleting it leaves nothing to write.
            return self._writes.pop(key) is not None
        if self.get(cls, entity_id) is None:
            return False
        self._existed.add(key)
        self._writes[key] = None
        self._count(key, 0)
        return True

    def _count(self, key: Key, entity_bytes: int) -> None:
        if self._max_result_bytes is None:
            return
        # Less than the event will take in the result: its entity, id, type (twice:
        # type and type_url) and tx, without tags, lengths, timestamps or offset.
        least = entity_bytes + len(key[1]) + 2 * len(key[0]) + len(self.tx)
        self._least_total += least - self._least_bytes.get(key, 0)
        self._least_bytes[key] = least
        if self._least_total > self._max_result_bytes:
            raise LimitExceeded(
                "MYKO_MAX_RESULT_BYTES",
                f"result: over the MYKO_MAX_RESULT_BYTES limit of {self._max_result_bytes} bytes "
                f"after {len(self._writes)} writes; split it into smaller commands",
            )

    def new_id(self, salt: str = "") -> str:
        """An id derived from the tx: the same on every retry of this command."""
        return str(uuid.uuid5(ID_NAMESPACE, f"{self.tx}/{salt}"))

    def events(self) -> list[item_pb2.Event]:
        out = []
        for (name, entity_id), entity in self._writes.items():
            if entity is None:
                ev = del_event(name, entity_id, tx=self.tx, ts=self.now, source=self.source)
            else:
                ev = set_event(entity, tx=self.tx, ts=self.now, source=self.source)
            ev.principal = self.principal.subject
            out.append(ev)
        return out

    @property
    def writes(self) -> Mapping[Key, Message | None]:
        return self._writes


def key_written(ctx: CommandContext, name: str, entity_id: str) -> bool:
    """A second write in one command keeps the version the first one set."""
    return (name, entity_id) in ctx._writes


def _name(cls: type[Message]) -> str:
    return str(cls.DESCRIPTOR.full_name)


def _copy(msg: E) -> E:
    out = type(msg)()
    out.CopyFrom(msg)
    return out


def _now() -> timestamp_pb2.Timestamp:
    # Not Timestamp.GetCurrentTime(): it goes through datetime, ~3x the cost, per event.
    ns = time.time_ns()
    return timestamp_pb2.Timestamp(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)
