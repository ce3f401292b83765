"""Commands on Zones. Their Targets are handled by sagas (see sagas.py)."""

from __future__ import annotations

from myko import App, CommandContext, InvalidArgument
from targets.v1 import commands_pb2, entities_pb2

from . import validation


def set_zone(cmd: commands_pb2.SetZone, ctx: CommandContext) -> None:
    zone = entities_pb2.Zone(name=validation.name(cmd.name), description=cmd.description.strip())
    zone.item.id = cmd.id or ctx.new_id()
    ctx.set(zone)


def delete_zone(cmd: commands_pb2.DeleteZone, ctx: CommandContext) -> None:
    if not cmd.id:
        raise InvalidArgument("id", "must not be empty")
    ctx.delete(entities_pb2.Zone, cmd.id)


def register(app: App) -> None:
    app.entity(entities_pb2.Zone)
    app.command(commands_pb2.SetZone)(set_zone)
    app.command(commands_pb2.DeleteZone)(delete_zone)
