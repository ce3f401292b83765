"""Commands on Zones. What happens to their Targets is declared in relations.py."""

from __future__ import annotations

from myko import CommandContext, Handlers
from targets.v1 import commands_pb2, entities_pb2

from . import validation

handlers = Handlers()


@handlers.command(commands_pb2.SetZone)
def set_zone(cmd: commands_pb2.SetZone, ctx: CommandContext) -> None:
    zone = entities_pb2.Zone(
        name=validation.name(cmd.name), description=validation.description(cmd.description)
    )
    zone.item.id = validation.entity_id(cmd.id) if cmd.id else ctx.new_id()
    ctx.set(zone)


@handlers.command(commands_pb2.DeleteZone)
def delete_zone(cmd: commands_pb2.DeleteZone, ctx: CommandContext) -> None:
    validation.entity_id(cmd.id)
    ctx.delete(entities_pb2.Zone, cmd.id)
