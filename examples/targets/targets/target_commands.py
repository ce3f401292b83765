"""Commands on Targets: operators only, within their tenant (tenancy.py)."""

from __future__ import annotations

from myko import CommandContext, Handlers, InvalidArgument, Rejected
from targets.v1 import commands_pb2, entities_pb2

from . import validation
from .tenancy import OPERATOR, check_owned, tenant_of
from .validation import finite

handlers = Handlers()

# hit_count is an int64.
MAX_HITS = 2**63 - 1


def _build(
    cmd: commands_pb2.SetTarget, ctx: CommandContext, prefix: str = "", salt: str = ""
) -> entities_pb2.Target:
    tenant = tenant_of(ctx)
    target_id = validation.entity_id(cmd.id, prefix + "id") if cmd.id else ctx.new_id(salt)
    current = ctx.get(entities_pb2.Target, target_id)
    check_owned(current, tenant, "target")
    if cmd.expected_version:
        found = current.item.version if current is not None else 0
        if found != cmd.expected_version:
            raise Rejected(
                f"{prefix}expected_version: target {target_id} is at version {found}, not {cmd.expected_version}"
            )
    if cmd.zone_id:
        # Malformed is INVALID_ARGUMENT here; missing is the reference check's FAILED_PRECONDITION.
        validation.entity_id(cmd.zone_id, prefix + "zone_id")
        check_owned(ctx.get(entities_pb2.Zone, cmd.zone_id), tenant, "zone")
    target = entities_pb2.Target(
        name=validation.name(cmd.name, prefix + "name"),
        status=validation.status(cmd.status, prefix + "status", default=entities_pb2.TARGET_STATUS_ACTIVE),  # type: ignore[arg-type]
        score=finite(cmd.score, prefix + "score"),
        hit_count=current.hit_count if current is not None else 0,
        tags=validation.tags(list(cmd.tags), prefix + "tags"),
        zone_id=cmd.zone_id,
        tenant=tenant,
    )
    target.item.id = target_id
    return target


@handlers.command(commands_pb2.SetTarget, allow=OPERATOR)
def set_target(cmd: commands_pb2.SetTarget, ctx: CommandContext) -> None:
    ctx.set(_build(cmd, ctx))


@handlers.command(commands_pb2.DeleteTarget, allow=OPERATOR)
def delete_target(cmd: commands_pb2.DeleteTarget, ctx: CommandContext) -> None:
    validation.entity_id(cmd.id)
    check_owned(ctx.get(entities_pb2.Target, cmd.id), tenant_of(ctx), "target")
    # Deleting what is already gone succeeds and changes nothing.
    ctx.delete(entities_pb2.Target, cmd.id)


@handlers.command(commands_pb2.RecordHits, allow=OPERATOR)
def record_hits(cmd: commands_pb2.RecordHits, ctx: CommandContext) -> None:
    validation.entity_id(cmd.id)
    if cmd.count <= 0:
        raise InvalidArgument("count", "must be positive")
    target = ctx.get(entities_pb2.Target, cmd.id)
    if target is None:
        raise Rejected(f"target {cmd.id} does not exist")
    check_owned(target, tenant_of(ctx), "target")
    # A valid count that the current total cannot take: a state conflict, not bad input.
    if target.hit_count > MAX_HITS - cmd.count:
        raise Rejected(
            f"count: target {cmd.id} has {target.hit_count} hits; {cmd.count} more would exceed {MAX_HITS}"
        )
    target.hit_count += cmd.count
    ctx.set(target)


@handlers.command(commands_pb2.ImportTargets, allow=OPERATOR)
def import_targets(cmd: commands_pb2.ImportTargets, ctx: CommandContext) -> None:
    if not cmd.targets:
        raise InvalidArgument("targets", "must not be empty")
    for i, t in enumerate(cmd.targets):
        ctx.set(_build(t, ctx, prefix=f"targets[{i}].", salt=str(i)))
