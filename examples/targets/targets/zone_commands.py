"""Commands on Zones. What happens to their Targets is declared in relations.py."""

from __future__ import annotations

from myko import CommandContext, Handlers, InvalidArgument
from targets.v1 import commands_pb2, entities_pb2

from . import validation

handlers = Handlers()


@handlers.command(commands_pb2.SetZone)
def set_zone(cmd: commands_pb2.SetZone, ctx: CommandContext) -> None:
    zone = entities_pb2.Zone(name=validation.name(cmd.name), description=cmd.description.strip())
    zone.item.id = cmd.id or ctx.new_id()
    ctx.set(zone)


@handlers.command(commands_pb2.DeleteZone)
def delete_zone(cmd: commands_pb2.DeleteZone, ctx: CommandContext) -> None:
    if not cmd.id:
        raise InvalidArgument("id", "must not be empty")
    ctx.delete(entities_pb2.Zone, cmd.id)
