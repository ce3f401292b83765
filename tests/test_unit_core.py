"""Unit tests: event codec, watermarks, registries, settings, command context, live hub.

On the counters test domain (tests/counters.py), not the example application.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from counters import COUNTER, Add, Counter
from google.protobuf import any_pb2, timestamp_pb2
from reactivex.subject import BehaviorSubject

from myko.app import App
from myko.command_context import CommandContext
from myko.conflicts import ChangeTracker
from myko.entities import EntityRegistry
from myko.errors import ConfigError, InvalidArgument
from myko.events import DEL, SET, from_record, set_event, to_record
from myko.live import LiveHub
from myko.repo import Store
from myko.settings import CommandSettings, KafkaSettings, QuerySettings
from myko.v1 import item_pb2
from myko.watermark import Watermark


def ts(ns: int) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromNanoseconds(ns)
    return out


def test_set_event_round_trips_through_a_kafka_record() -> None:
    t = Counter(value=3, payload=b"x")
    t.item.id = "id-1"
    t.item.type = COUNTER
    ev = set_event(t, tx="tx-1", ts=ts(1_700_000_000_123_456_789), source="cmd-1")
    rec = to_record(ev, "p." + COUNTER)
    assert rec.key == b"id-1" and rec.value is not None
    back = from_record(rec.topic, 2, 7, rec.key, rec.value, rec.headers)
    assert back.op == SET and back.id == "id-1" and back.tx == "tx-1" and back.source == "cmd-1"
    assert back.ts.ToNanoseconds() == 1_700_000_000_123_456_789
    assert (back.offset.partition, back.offset.offset) == (2, 7)
    decoded = Counter()
    back.entity.Unpack(decoded)
    assert decoded == t


def test_del_is_a_tombstone_with_metadata_in_headers() -> None:
    ev = item_pb2.Event(op=DEL, type=COUNTER, id="gone", tx="tx-2", ts=ts(5), source="s")
    rec = to_record(ev, COUNTER)
    assert rec.value is None
    back = from_record(rec.topic, 0, 1, rec.key, None, rec.headers)
    assert back.op == DEL and back.tx == "tx-2" and not back.HasField("entity")


def test_watermark_covers_and_round_trips() -> None:
    w = Watermark({("t", 0): 5, ("t", 1): 2})
    assert w.covers({("t", 0): 5}) and not w.covers({("t", 0): 6}) and not w.covers({("u", 0): 1})
    assert Watermark.from_proto(w.to_proto()) == w
    assert w.advanced({("t", 0): 3, ("t", 1): 9}).positions == {("t", 0): 5, ("t", 1): 9}
    after = Watermark.after([item_pb2.Offset(topic="t", partition=0, offset=4)])
    assert after.positions == {("t", 0): 5}


def test_entity_must_start_with_mitem() -> None:
    reg = EntityRegistry()
    with pytest.raises(ConfigError, match="field 1"):
        reg.add(Add)
    assert reg.add(Counter).name == COUNTER


def test_handler_registered_twice_is_a_config_error() -> None:
    app = App("t")
    app.command(Add)(lambda c, ctx: None)
    with pytest.raises(ConfigError, match="two handlers"):
        app.command(Add)(lambda c, ctx: None)


def test_settings_fail_fast_on_bad_values() -> None:
    with pytest.raises(ConfigError, match="MYKO_COMMAND_PORT"):
        CommandSettings.from_env({"MYKO_COMMAND_PORT": "http"})
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        KafkaSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "nohostport"})
    with pytest.raises(ConfigError, match="MYKO_REPO_ADDR"):
        QuerySettings.from_env({"MYKO_APP": "notes", "MYKO_REPO_ADDR": "x"})
    with pytest.raises(ConfigError, match="MYKO_APP is not set"):
        QuerySettings.from_env({})
    s = CommandSettings.from_env(
        {
            "MYKO_APP": "notes",
            "MYKO_COMMAND_PORT": "6000",
            "MYKO_TOPIC_PREFIX": "p.",
            "MYKO_AUTH_DISABLED": "true",
        }
    )
    assert s.port == 6000 and s.kafka.topic_prefix == "p."


def _store() -> Store:
    reg = EntityRegistry()
    reg.add(Counter)
    return Store(reg)


def _apply(store: Store, t: Any, offset: int) -> None:
    packed = any_pb2.Any()
    packed.Pack(t)
    store.apply_events(
        [
            item_pb2.Event(
                op=SET,
                type=COUNTER,
                id=t.item.id,
                entity=packed,
                offset=item_pb2.Offset(topic=COUNTER, offset=offset),
            )
        ],
        Watermark({(COUNTER, 0): offset + 1}),
    )


def test_context_fills_mitem_and_versions() -> None:
    store = _store()
    tracker = ChangeTracker(store)
    ctx = CommandContext(tx="tx-a", store=store, tracker=tracker, source="s", now=ts(10))
    t = Counter(value=1)
    t.item.id = "a"
    written = ctx.set(t)
    assert (written.item.version, written.item.created_tx, written.item.type) == (
        1,
        "tx-a",
        COUNTER,
    )
    _apply(store, written, 0)
    ctx2 = CommandContext(tx="tx-b", store=store, tracker=tracker, source="s", now=ts(20))
    current = ctx2.get(Counter, "a")
    assert current is not None
    current.value = 2
    again = ctx2.set(current)
    assert (again.item.version, again.item.created_tx, again.item.updated_tx) == (2, "tx-a", "tx-b")
    with pytest.raises(InvalidArgument, match="id"):
        ctx2.set(Counter(value=1))


def test_a_read_becomes_stale_when_the_entity_changes() -> None:
    store = _store()
    tracker = ChangeTracker(store)
    t = Counter(value=1)
    t.item.id = "a"
    _apply(store, t, 0)
    ctx = CommandContext(tx="tx", store=store, tracker=tracker, source="s")
    token = tracker.open()
    ctx.get(Counter, "a")
    assert not tracker.stale(ctx.reads, ctx.scans)
    t.value = 2
    _apply(store, t, 1)
    assert tracker.stale(ctx.reads, ctx.scans)
    tracker.close(token)


def test_create_then_delete_in_one_command_writes_nothing() -> None:
    store = _store()
    ctx = CommandContext(tx="tx", store=store, tracker=ChangeTracker(store), source="s")
    t = Counter(value=1)
    t.item.id = "new"
    ctx.set(t)
    assert ctx.delete(Counter, "new")
    assert ctx.events() == []


async def test_identical_subscriptions_share_one_evaluation_and_payload() -> None:
    hub = LiveHub()
    source: BehaviorSubject[int] = BehaviorSubject(1)
    builds: list[int] = []

    def build(value: int, seq: int) -> bytes:
        builds.append(value)
        return f"{value}:{seq}".encode()

    subs = [hub.open("k", lambda: source, build) for _ in range(10)]
    assert len(hub) == 1
    assert [await s.next() for s in subs] == [b"1:1"] * 10
    source.on_next(2)
    source.on_next(2)  # unchanged: no new payload
    assert [await s.next() for s in subs] == [b"2:2"] * 10
    assert builds == [1, 2]  # serialised once per change, not per subscriber
    for s in subs:
        s.close()
    assert len(hub) == 0


async def test_slow_subscriber_gets_only_the_latest_value() -> None:
    hub = LiveHub()
    source: BehaviorSubject[int] = BehaviorSubject(0)
    sub = hub.open("k", lambda: source, lambda v, seq: str(v).encode())
    assert await sub.next() == b"0"
    for i in range(1, 1000):
        source.on_next(i)
    assert await sub.next() == b"999"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sub.next(), 0.05)
    sub.close()
