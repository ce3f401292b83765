"""Queries: each returns a stream of full, ordered arrays, of the caller's tenant only.

Scoped `by_tenant`: the handler gets the caller's tenant and filters by it, and
callers of one tenant share each evaluation (tenancy.py)."""

from __future__ import annotations

from collections.abc import Hashable

from reactivex import Observable

from myko import Handlers, Store, Window, by_tenant
from targets.v1 import entities_pb2, queries_pb2

from . import validation
from .tenancy import VIEWER

Target = entities_pb2.Target

handlers = Handlers()


def by_name(e: entities_pb2.Target | entities_pb2.Zone) -> str:
    """Name order, case-insensitive. Declared (`order=[by_name]`): the store keeps it,
    ties broken by id, so one string per entity is all it costs (~90 bytes)."""
    return e.name.casefold()


def by_score(t: entities_pb2.Target) -> tuple[float, str]:
    """Highest score first, then by name (a declared order breaks any remaining tie by id)."""
    return (-t.score, t.name.casefold())


# `index` and `order` (docs/authoring.md): query_svc keeps the tenant index and the
# name order of every Target from the first event, so a new AllTargets over 100k
# Targets walks a kept order instead of decoding and sorting them all.
@handlers.query(queries_pb2.AllTargets, index=["tenant"], order=[by_name], allow=VIEWER, scope=by_tenant)
def all_targets(q: queries_pb2.AllTargets, repos: Store, tenant: str) -> Observable[list[Target]]:
    return repos.of(Target).watch(equal={"tenant": tenant}, order_by=by_name)


@handlers.query(
    queries_pb2.TargetsByStatus, index=["status", "tenant"], order=[by_name], allow=VIEWER, scope=by_tenant
)
def targets_by_status(q: queries_pb2.TargetsByStatus, repos: Store, tenant: str) -> Observable[list[Target]]:
    status = validation.status(q.status)
    return repos.of(Target).watch(equal={"status": status, "tenant": tenant}, order_by=by_name)


@handlers.query(queries_pb2.TargetById, allow=VIEWER, scope=by_tenant)
def target_by_id(q: queries_pb2.TargetById, repos: Store, tenant: str) -> Observable[list[Target]]:
    return repos.of(Target).watch(equal={"item.id": validation.entity_id(q.id), "tenant": tenant})


@handlers.query(queries_pb2.TargetsInZone, index=["zone_id"], order=[by_name], allow=VIEWER, scope=by_tenant)
def targets_in_zone(q: queries_pb2.TargetsInZone, repos: Store, tenant: str) -> Observable[list[Target]]:
    # By a declared index: starting one costs the zone's targets, not a scan of every target.
    zone_id = validation.entity_id(q.zone_id, "zone_id")
    return repos.of(Target).watch(equal={"zone_id": zone_id, "tenant": tenant}, order_by=by_name)


@handlers.query(queries_pb2.AllZones, index=["tenant"], order=[by_name], allow=VIEWER, scope=by_tenant)
def all_zones(q: queries_pb2.AllZones, repos: Store, tenant: str) -> Observable[list[entities_pb2.Zone]]:
    return repos.of(entities_pb2.Zone).watch(equal={"tenant": tenant}, order_by=by_name)


# Top-N: the framework keeps only the first `limit` of this order live (docs/windows.md);
# the count of all matches is not wanted, so adding a low scorer emits nothing.
@handlers.query(
    queries_pb2.TopTargets,
    index=["tenant"],
    order=[by_score],
    allow=VIEWER,
    scope=by_tenant,
    window=Window(max_limit=100, default_limit=10, total=False),
)
def top_targets(q: queries_pb2.TopTargets, repos: Store, tenant: str) -> Observable[list[Target]]:
    return repos.of(Target).watch(equal={"tenant": tenant}, order_by=by_score)


# A page of the Targets page (ui/src/pages/TargetsPage): one window of the name order,
# with the number of matches for "rows 51-100 of N".
@handlers.query(
    queries_pb2.TargetsPage,
    index=["status", "tenant"],
    order=[by_name],
    allow=VIEWER,
    scope=by_tenant,
    window=Window(max_limit=500, default_limit=50, offset_field="offset", max_offset=10_000_000),
)
def targets_page(q: queries_pb2.TargetsPage, repos: Store, tenant: str) -> Observable[list[Target]]:
    wanted: dict[str, Hashable] = {"tenant": tenant}
    if q.status != entities_pb2.TARGET_STATUS_UNSPECIFIED:
        wanted["status"] = validation.status(q.status)
    return repos.of(Target).watch(equal=wanted, order_by=by_name)
