"""Commands on Zones: operators only, within their tenant (tenancy.py).
What happens to their Targets is declared in relations.py."""

from __future__ import annotations

from myko import CommandContext, Handlers
from targets.v1 import commands_pb2, entities_pb2

from . import validation
from .tenancy import OPERATOR, check_owned, tenant_of

handlers = Handlers()


@handlers.command(commands_pb2.SetZone, allow=OPERATOR)
def set_zone(cmd: commands_pb2.SetZone, ctx: CommandContext) -> None:
    tenant = tenant_of(ctx)
    zone = entities_pb2.Zone(
        name=validation.name(cmd.name), description=validation.description(cmd.description), tenant=tenant
    )
    zone.item.id = validation.entity_id(cmd.id) if cmd.id else ctx.new_id()
    check_owned(ctx.get(entities_pb2.Zone, zone.item.id), tenant, "zone")
    ctx.set(zone)


@handlers.command(commands_pb2.DeleteZone, allow=OPERATOR)
def delete_zone(cmd: commands_pb2.DeleteZone, ctx: CommandContext) -> None:
    validation.entity_id(cmd.id)
    check_owned(ctx.get(entities_pb2.Zone, cmd.id), tenant_of(ctx), "zone")
    ctx.delete(entities_pb2.Zone, cmd.id)
