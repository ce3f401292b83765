"""Reports: values derived only from entities, recomputed as they change; per tenant, as queries.py."""

from __future__ import annotations

from collections import Counter

import reactivex
from reactivex import Observable
from reactivex import operators as ops

from myko import Handlers, Store, by_tenant, derive
from targets.v1 import entities_pb2, reports_pb2

from . import validation
from .tenancy import VIEWER
from .validation import STATUSES

handlers = Handlers()


@handlers.report(reports_pb2.TargetCountsByStatus, allow=VIEWER, scope=by_tenant)
def counts_by_status(
    r: reports_pb2.TargetCountsByStatus, repos: Store, tenant: str
) -> Observable[reports_pb2.StatusCounts]:
    def count(targets: list[entities_pb2.Target]) -> reports_pb2.StatusCounts:
        counts = Counter(t.status for t in targets)
        return reports_pb2.StatusCounts(
            counts=[reports_pb2.StatusCount(status=s, count=counts.get(s, 0)) for s in sorted(STATUSES)],  # type: ignore[call-overload, arg-type]
            total=len(targets),
        )

    return derive(repos.of(entities_pb2.Target).watch(equal={"tenant": tenant}), count)


@handlers.report(reports_pb2.ZoneTotals, allow=VIEWER, scope=by_tenant)
def zone_totals(
    r: reports_pb2.ZoneTotals, repos: Store, tenant: str
) -> Observable[reports_pb2.ZoneTotalsValue]:
    if r.zone_id:
        validation.entity_id(r.zone_id, "zone_id")
    zones = repos.of(entities_pb2.Zone).watch(
        equal={"item.id": r.zone_id, "tenant": tenant} if r.zone_id else {"tenant": tenant},
        order_by=lambda z: (z.name.casefold(), z.item.id),
    )
    targets = repos.of(entities_pb2.Target).watch(
        equal={"zone_id": r.zone_id, "tenant": tenant} if r.zone_id else {"tenant": tenant},
        where=None if r.zone_id else (lambda t: bool(t.zone_id)),
    )

    def total(pair: tuple[list[entities_pb2.Zone], list[entities_pb2.Target]]) -> reports_pb2.ZoneTotalsValue:
        zs, ts = pair
        count: Counter[str] = Counter()
        score: dict[str, float] = {}
        for t in ts:
            count[t.zone_id] += 1
            score[t.zone_id] = score.get(t.zone_id, 0.0) + t.score
        return reports_pb2.ZoneTotalsValue(
            zones=[
                reports_pb2.ZoneTotal(
                    zone_id=z.item.id,
                    zone_name=z.name,
                    target_count=count.get(z.item.id, 0),
                    score_total=score.get(z.item.id, 0.0),
                )
                for z in zs
            ]
        )

    return reactivex.combine_latest(zones, targets).pipe(ops.map(total))
