"""A Get nobody watches is answered without starting a live evaluation, and says exactly
what a Watch of the same query would have started with (myko/live_bus.py, `LiveBus.get`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pytest
from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry
from targets.v1 import entities_pb2, queries_pb2, reports_pb2

from myko.app import App
from myko.authentication import Authenticator
from myko.errors import InvalidArgument
from myko.events import set_event
from myko.live import LiveHub
from myko.live_bus import LiveBus
from myko.live_kind import LiveKind
from myko.metrics.live import LiveMetrics
from myko.principal import Principal
from myko.repo import Store
from myko.rpc import Ctx
from myko.settings import AuthSettings
from myko.v1 import item_pb2, query_pb2
from myko.watermark import Watermark

TOPIC = "targets.v1.Target"
# More Targets than 32 per zone's share (myko/repo.py `_SMALL_SHARE`), so that both ways a
# first array is made are exercised: AllTargets walks the kept name order, one zone's
# Targets are decoded and sorted.
TARGETS = 400
ZONES = 20


class _Call:
    """The parts of a call's context a Get reads: no deadline, no credentials."""

    def time_remaining(self) -> float | None:
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


_CTX = cast(Ctx, _Call())


def _packed(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg, deterministic=True)
    return out


def _target(i: int, *, offset: int, name: str | None = None) -> item_pb2.Event:
    t = entities_pb2.Target(
        # Names out of id order, with ties, so the order (and its tie-break by id) matters.
        name=name if name is not None else f"Target {(i * 7) % 50}",
        score=float(i % 13),
        status=entities_pb2.TARGET_STATUS_ACTIVE if i % 3 else entities_pb2.TARGET_STATUS_PAUSED,
        zone_id=f"zone-{i % ZONES}",
    )
    t.item.id, t.item.type, t.item.version = f"t-{i:04d}", TOPIC, 1
    event = set_event(t, tx="", ts=timestamp_pb2.Timestamp(seconds=1), source="test")
    event.offset.CopyFrom(item_pb2.Offset(topic=TOPIC, partition=0, offset=offset))
    return event


def _buses(app: App, registry: CollectorRegistry | None = None) -> tuple[Store, LiveHub, LiveBus, LiveBus]:
    # Built as query_svc builds its store: the app's declared indexes and orders.
    store = Store(app.entities, indexes=app.declared_indexes, orders=app.declared_orders, keep_events=False)
    store.apply_events([_target(i, offset=i) for i in range(TARGETS)], Watermark({(TOPIC, 0): TARGETS}))
    hub = LiveHub(position=lambda: store.watermark, metrics=LiveMetrics(registry or CollectorRegistry()))
    auth = Authenticator(AuthSettings(disabled=True))
    queries = LiveBus(kind=LiveKind.QUERY, registry=app.queries, store=store, hub=hub, auth=auth)
    reports = LiveBus(kind=LiveKind.REPORT, registry=app.reports, store=store, hub=hub, auth=auth)
    return store, hub, queries, reports


QUERIES: Sequence[Message] = (
    queries_pb2.AllTargets(),
    queries_pb2.TargetsInZone(zone_id="zone-3"),
    queries_pb2.TargetsInZone(zone_id="no-such-zone"),
    queries_pb2.TargetsByStatus(status=entities_pb2.TARGET_STATUS_PAUSED),
    queries_pb2.TargetById(id="t-0042"),
    queries_pb2.TargetById(id="t-9999"),
)


async def _principal() -> Principal:
    auth = Authenticator(AuthSettings(disabled=True))
    return await auth.from_metadata(())


async def _first_emission(bus: LiveBus, query: Message) -> bytes:
    with await bus.open(_packed(query), item_pb2.Watermark(), _CTX, await _principal()) as sub:
        return await sub.next()


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: f"{type(q).__name__}({q})".replace("\n", " "))
async def test_a_get_nobody_watches_answers_what_a_watch_starts_with(
    example_app: App, query: Message
) -> None:
    registry = CollectorRegistry()
    _store, hub, queries, _reports = _buses(example_app, registry)

    answer = await queries.get(_packed(query), item_pb2.Watermark(), _CTX)

    assert len(hub) == 0, "a one-shot Get left a live evaluation behind"
    # Counted as an evaluation's result sent to one subscriber would be.
    labels = {"type": type(query).DESCRIPTOR.full_name}
    counted = [
        registry.get_sample_value(f"myko_live_{name}_total", labels)
        for name in ("emissions", "sent_messages", "sent_bytes")
    ]
    assert counted == [1, 1, len(answer)]
    assert answer == await _first_emission(queries, query)
    result = query_pb2.QueryResult.FromString(answer)
    assert result.seq == 1
    assert {(o.topic, o.partition): o.offset for o in result.watermark.positions} == {(TOPIC, 0): TARGETS}


async def test_the_one_shot_answer_is_ordered_and_complete(example_app: App) -> None:
    _store, _hub, queries, _reports = _buses(example_app)
    in_zone = range(3, TARGETS, ZONES)  # the Targets _target puts in zone-3
    # By name, case-insensitive, ties by id: the example's declared order.
    expected = sorted((f"Target {(i * 7) % 50}".casefold(), f"t-{i:04d}") for i in in_zone)

    answer = query_pb2.QueryResult.FromString(
        await queries.get(_packed(queries_pb2.TargetsInZone(zone_id="zone-3")), item_pb2.Watermark(), _CTX)
    )

    got = [entities_pb2.Target.FromString(item.value) for item in answer.items]
    assert [(t.name.casefold(), t.item.id) for t in got] == expected


async def test_a_get_of_a_watched_query_answers_from_the_live_evaluation(example_app: App) -> None:
    store, hub, queries, _reports = _buses(example_app)
    query = queries_pb2.TargetsInZone(zone_id="zone-3")
    with await queries.open(_packed(query), item_pb2.Watermark(), _CTX, await _principal()) as watch:
        await watch.next()
        store.apply_events([_target(3, offset=TARGETS, name="Renamed")], Watermark({(TOPIC, 0): TARGETS + 1}))
        latest = await watch.next()

        answer = await queries.get(_packed(query), item_pb2.Watermark(), _CTX)

        assert answer == latest
        assert query_pb2.QueryResult.FromString(answer).seq == 2  # the live evaluation's second value
        assert len(hub) == 1
    assert len(hub) == 0


async def test_a_report_get_answers_its_first_value_and_leaves_nothing_running(example_app: App) -> None:
    _store, hub, _queries, reports = _buses(example_app)
    report = reports_pb2.TargetCountsByStatus()

    answer = await reports.get(_packed(report), item_pb2.Watermark(), _CTX)

    assert len(hub) == 0
    assert answer == await _first_emission(reports, report)


async def test_a_one_shot_get_fails_as_its_handler_does(example_app: App) -> None:
    _store, hub, queries, _reports = _buses(example_app)
    bad = queries_pb2.TargetsInZone(zone_id="not an id!")

    with pytest.raises(InvalidArgument) as raised:
        await queries.get(_packed(bad), item_pb2.Watermark(), _CTX)

    assert "zone_id" in str(raised.value)
    assert len(hub) == 0
