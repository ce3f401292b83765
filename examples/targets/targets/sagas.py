"""Sagas: what follows from a Zone changing.

- cascade delete: deleting a Zone deletes each of its Targets;
- auto-create: a new Zone gets its "perimeter" Target.

Each saga is a pipeline from the events of its sources to commands. It runs
once per event, and the runtime gives every command a tx derived from the
event, so a redelivered event has no second effect (see docs/sagas.md).
"""

from __future__ import annotations

import reactivex
from google.protobuf.message import Message
from reactivex import Observable
from reactivex import operators as ops

from myko import App, Store
from myko.saga_event import SagaEvent
from targets.v1 import commands_pb2, entities_pb2

Zone = entities_pb2.Zone
Target = entities_pb2.Target

PERIMETER_NAME = "perimeter"


def delete_targets_of_deleted_zone(events: Observable[SagaEvent], repos: Store) -> Observable[Message]:
    def delete_targets(event: SagaEvent) -> Observable[Message]:
        # The runtime has brought `repos` up to everything committed before the
        # delete, and command_svc refuses new Targets in a missing Zone: this
        # list is complete. DeleteTarget of a Target already gone is a no-op.
        owned = repos.of(Target).filter(lambda t: t.zone_id == event.id)
        return reactivex.from_iterable(
            commands_pb2.DeleteTarget(id=t.item.id) for t in sorted(owned, key=lambda t: t.item.id)
        )

    def zone_deleted(event: SagaEvent) -> bool:
        return event.is_delete_of(Zone)

    return events.pipe(ops.filter(zone_deleted), ops.flat_map(delete_targets))


def create_perimeter_of_new_zone(events: Observable[SagaEvent], repos: Store) -> Observable[Message]:
    def perimeter(event: SagaEvent) -> Message:
        zone = event.entity_as(Zone)
        # The id comes from the event, so every redelivery addresses the same Target.
        return commands_pb2.SetTarget(
            id=event.new_id(PERIMETER_NAME),
            name=PERIMETER_NAME,
            status=entities_pb2.TARGET_STATUS_ACTIVE,
            zone_id=zone.item.id,
            tags=["auto"],
        )

    def zone_created(event: SagaEvent) -> bool:
        # Deleted again before the saga got here: nothing to create it in.
        return event.is_set_of(Zone) and event.is_created and repos.of(Zone).get(event.id) is not None

    return events.pipe(ops.filter(zone_created), ops.map(perimeter))


def register(app: App) -> None:
    app.saga("zone-cascade-delete", sources=[Zone])(delete_targets_of_deleted_zone)
    app.saga("zone-perimeter", sources=[Zone])(create_perimeter_of_new_zone)
