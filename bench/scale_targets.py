"""The Targets the in-process benches store: the scale section's, as command_svc writes them.

`bench.scale` imports them through ImportTargets; snapshot_cost, snapshot_wire,
store_memory and mirror_load build them here directly, one shape for all, so their
figures describe the same entities.
"""

from __future__ import annotations

import uuid

from google.protobuf import timestamp_pb2
from targets.v1 import entities_pb2

from myko.events import set_event
from myko.v1 import item_pb2

TOPIC = entities_pb2.Target.DESCRIPTOR.full_name
# Timestamps from here on, one second apart.
_EPOCH_S = 1_764_000_000


def scale_target(i: int, *, tenant: str = "", zone_id: str = "") -> entities_pb2.Target:
    """Target number i with what command_svc fills in (one transaction per import of 1,000)."""
    t = entities_pb2.Target(
        name=f"Scale target {i}",
        status=entities_pb2.TARGET_STATUS_ACTIVE,
        score=float(i % 1000),
        tenant=tenant,
        zone_id=zone_id,
    )
    t.tags.extend(["bench", f"t{i % 16}"])
    item = t.item
    item.id, item.type, item.version = f"scale-{i:07d}", TOPIC, 1
    item.created_tx = item.updated_tx = str(uuid.UUID(int=i // 1000 + 1))
    item.created_at.seconds = item.updated_at.seconds = _EPOCH_S + i
    return t


def stored_event(t: entities_pb2.Target, *, partition: int, offset: int) -> item_pb2.Event:
    """The SET event of `t` as the store holds it: command_svc's event, at its offset."""
    event = set_event(
        t,
        tx=t.item.updated_tx,
        ts=timestamp_pb2.Timestamp(seconds=t.item.updated_at.seconds),
        source="command-1",
    )
    event.principal = "anonymous"
    event.offset.CopyFrom(item_pb2.Offset(topic=TOPIC, partition=partition, offset=offset))
    return event
