"""Every emission names the watermark of the batch it reflects, though a batch's results
share one watermark proto (myko/live_bus.py makes it once per batch, not per result)."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import any_pb2, timestamp_pb2
from google.protobuf.message import Message
from targets.v1 import entities_pb2, queries_pb2, reports_pb2

from myko.app import App
from myko.authentication import Authenticator
from myko.events import set_event
from myko.live import LiveHub, Subscription
from myko.live_bus import LiveBus
from myko.live_kind import LiveKind
from myko.principal import Principal
from myko.repo import Store
from myko.rpc import Ctx
from myko.settings import AuthSettings
from myko.v1 import item_pb2, query_pb2, report_pb2
from myko.watermark import Watermark

TOPIC = "targets.v1.Target"
IDS = ["a", "b", "c"]


class _NoDeadline:
    def time_remaining(self) -> float | None:
        return None


_CTX = cast(Ctx, _NoDeadline())  # the only part of a call's context an unfenced open reads


def _packed(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg, deterministic=True)
    return out


def _batch(score: float, offset: int, status: int) -> list[item_pb2.Event]:
    out = []
    for n, target_id in enumerate(IDS):
        t = entities_pb2.Target(name=target_id, score=score, status=status)  # type: ignore[arg-type]
        t.item.id, t.item.type, t.item.version = target_id, TOPIC, 1
        ev = set_event(t, tx="", ts=timestamp_pb2.Timestamp(seconds=1), source="test")
        ev.offset.CopyFrom(item_pb2.Offset(topic=TOPIC, partition=n, offset=offset))
        out.append(ev)
    return out


def _positions(wm: item_pb2.Watermark) -> dict[tuple[str, int], int]:
    return {(o.topic, o.partition): o.offset for o in wm.positions}


async def test_results_of_each_batch_carry_that_batchs_watermark(example_app: App) -> None:
    store = Store(example_app.entities, keep_events=False)
    store.apply_events(
        _batch(0.0, 0, entities_pb2.TARGET_STATUS_ACTIVE), Watermark({(TOPIC, n): 1 for n in range(3)})
    )
    hub = LiveHub(position=lambda: store.watermark)
    auth = Authenticator(AuthSettings(disabled=True))
    principal: Principal = await auth.from_metadata(())
    queries = LiveBus(kind=LiveKind.QUERY, registry=example_app.queries, store=store, hub=hub, auth=auth)
    reports = LiveBus(kind=LiveKind.REPORT, registry=example_app.reports, store=store, hub=hub, auth=auth)
    subs: list[tuple[Subscription, Any]] = [
        (
            await queries.open(_packed(queries_pb2.TargetById(id=i)), item_pb2.Watermark(), _CTX, principal),
            query_pb2.QueryResult,
        )
        for i in IDS
    ]
    subs.append(
        (
            await reports.open(
                _packed(reports_pb2.TargetCountsByStatus()), item_pb2.Watermark(), _CTX, principal
            ),
            report_pb2.ReportResult,
        )
    )
    for sub, cls in subs:
        assert _positions(cls.FromString(await sub.next()).watermark) == {(TOPIC, n): 1 for n in range(3)}

    # Each batch changes every Target's score and status: every result changes.
    for step, status in ((1, entities_pb2.TARGET_STATUS_PAUSED), (2, entities_pb2.TARGET_STATUS_ACTIVE)):
        offset = step * 10
        store.apply_events(
            _batch(float(step), offset, status), Watermark({(TOPIC, n): offset + 1 for n in range(3)})
        )
        for sub, cls in subs:
            result = cls.FromString(await sub.next())
            assert _positions(result.watermark) == {(TOPIC, n): offset + 1 for n in range(3)}
            assert result.seq == step + 1
    for sub, _ in subs:
        sub.close()
