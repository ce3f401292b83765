"""What follows from a Zone changing: declared, not written as sagas.

- Deleting a Zone deletes its Targets: `Target.zone_id` is declared in
  entities.proto as a reference to the Zone with `on_delete: ON_DELETE_CASCADE`
  (which also refuses a Target whose zone does not exist).
- A new Zone gets its "perimeter" Target: `perimeter_of` below.

Myko runs both as sagas with the sagas' once-only guarantee (docs/sagas.md).
"""

from __future__ import annotations

from myko import Handlers
from targets.v1 import entities_pb2

Zone = entities_pb2.Zone
Target = entities_pb2.Target

PERIMETER_NAME = "perimeter"

handlers = Handlers()


def perimeter(zone: Zone) -> Target:
    # Myko gives it the id `perimeter_of.id_for(zone.item.id)`.
    return Target(
        name=PERIMETER_NAME,
        status=entities_pb2.TARGET_STATUS_ACTIVE,
        zone_id=zone.item.id,
        tags=["auto"],
        # The zone's tenant: the saga that creates it acts as itself, not as a tenant member.
        tenant=zone.tenant,
    )


perimeter_of = handlers.ensure(Target, for_each=Zone, build=perimeter, name="zone-perimeter")
