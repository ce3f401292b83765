"""repo_svc (and command_svc, saga_svc) restarting from a checkpoint has exactly the state a full replay gives,
under compaction, and refuses (replaying instead) every checkpoint that the topics
no longer back: a recreated topic, a tombstone the cleaner has removed, a damaged
or half-written file (docs/checkpoints.md). Against the real broker.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from aiokafka.partitioner import DefaultPartitioner
from google.protobuf import timestamp_pb2
from kafka_inspect import produce, read_topic
from myko_client import Clients
from targets.v1 import commands_pb2, entities_pb2

from myko import checkpoint_file
from myko.app import App
from myko.command_service import CommandService
from myko.events import del_event, set_event, to_record
from myko.repo_service import RepoService
from myko.saga_service import SagaService
from myko.settings import CommandSettings, KafkaSettings, RepoSettings, SagaSettings
from myko.topics import ensure_topics, entity_topics
from myko.v1 import item_pb2
from myko.watermark import Watermark

pytestmark = pytest.mark.kafka

TARGET = "targets.v1.Target"
ZONE = "targets.v1.Zone"
# Compaction as eager as the broker allows: segments roll within 100 ms of their first
# record and any dirt makes a log cleanable (the cleaner still wakes every 15 s at most).
EAGER_COMPACTION = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.001", "min.compaction.lag.ms": "0"}


def target(i: int, name: str = "") -> entities_pb2.Target:
    return entities_pb2.Target(item=item_pb2.MItem(id=f"t{i}", type=TARGET), name=name or f"n{i}")


def zone(i: int) -> entities_pb2.Zone:
    return entities_pb2.Zone(item=item_pb2.MItem(id=f"z{i}", type=ZONE), name=f"zone {i}")


def sets(*entities: object) -> list[item_pb2.Event]:
    ts = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    return [set_event(e, tx=str(uuid.uuid4()), ts=ts, source="test") for e in entities]  # type: ignore[arg-type]


def dels(type_name: str, *ids: str) -> list[item_pb2.Event]:
    ts = timestamp_pb2.Timestamp(seconds=1_700_000_001)
    return [del_event(type_name, i, tx=str(uuid.uuid4()), ts=ts, source="test") for i in ids]


def partition_of(key: bytes) -> int:
    """Kafka's default partitioner (murmur2 of the key) over the tests' 3 partitions."""
    return int(DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2]))


class Topics:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.kafka = KafkaSettings.from_env(env)
        self.prefix = env["MYKO_TOPIC_PREFIX"]

    def topic(self, type_name: str) -> str:
        return self.prefix + type_name

    async def create(self, app: App, extra: dict[str, str]) -> None:
        specs = entity_topics(self.kafka, app.entities)
        for spec in specs:
            spec.config.update(extra)
        await ensure_topics(self.kafka, specs)

    async def write(self, events: list[item_pb2.Event]) -> None:
        """Each entity to its key's partition (as command_svc's producer does), one transaction per partition."""
        by_partition: dict[
            tuple[str, int], list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]]
        ] = {}
        for ev in events:
            rec = to_record(ev, self.topic(ev.type))
            part = partition_of(rec.key)
            by_partition.setdefault((rec.topic, part), []).append((rec.key, rec.value, list(rec.headers)))
        for (topic, part), records in by_partition.items():
            await produce(self.kafka.bootstrap_servers, topic, part, records, transactional=True)


@pytest.fixture
def topics(myko_env: dict[str, str]) -> Topics:
    return Topics(myko_env)


def service_env(env: dict[str, str], directory: Path | None, **extra: str) -> dict[str, str]:
    """A service's environment: checkpoints in `directory` (None: off), written only when the
    test asks (`wrote_one`)."""
    out = {**env, "MYKO_CHECKPOINT_EVERY_RECORDS": "1000000000", **extra}
    if directory is not None:
        out["MYKO_CHECKPOINT_DIR"] = str(directory)
    return out


Svc = TypeVar("Svc", RepoService, CommandService, SagaService)


async def started(svc: Svc) -> Svc:
    async with asyncio.timeout(90):
        await svc.start()
    return svc


async def start_repo(env: dict[str, str], app: App, directory: Path | None) -> RepoService:
    return await started(RepoService(RepoSettings.from_env(service_env(env, directory)), app))


State = tuple[list[bytes], Watermark]


def state_of(svc: RepoService) -> State:
    """Every entity's SET event as repo_svc serves it (entity, envelope, offset), and the watermark."""
    events = sorted(ev.SerializeToString(deterministic=True) for ev in svc.store.snapshot())
    return events, svc.store.watermark


async def full_replay(env: dict[str, str], app: App) -> State:
    svc = await start_repo(env, app, None)
    try:
        return state_of(svc)
    finally:
        await svc.stop()


async def wrote_one(svc: RepoService | CommandService | SagaService) -> Path:
    """The running service writes a checkpoint of what the topics hold now, and stops."""
    try:
        assert svc.checkpoints is not None
        path = await svc.checkpoints.write(svc.reader)
        assert path is not None and path.exists()
        return path
    finally:
        await svc.stop()


async def checkpointed(env: dict[str, str], app: App, directory: Path) -> Path:
    """A running repo_svc writes a checkpoint of what the topics hold now."""
    return await wrote_one(await start_repo(env, app, directory))


async def restarted(env: dict[str, str], app: App, directory: Path) -> tuple[State, RepoService]:
    svc = await start_repo(env, app, directory)
    try:
        return state_of(svc), svc
    finally:
        await svc.stop()


def names(state: State) -> dict[str, str]:
    out = {}
    for raw in state[0]:
        ev = item_pb2.Event.FromString(raw)
        if ev.type == TARGET:
            out[ev.id] = entities_pb2.Target.FromString(ev.entity.value).name
    return out


async def test_a_restart_from_a_checkpoint_gives_the_state_of_a_full_replay(
    topics: Topics, example_app: App, tmp_path: Path
) -> None:
    env = topics.env
    await topics.create(example_app, {})
    await topics.write(sets(*(target(i) for i in range(30)), zone(1)))
    await topics.write(dels(TARGET, *(f"t{i}" for i in range(25, 30))))
    path = await checkpointed(env, example_app, tmp_path)
    # Past the checkpoint's watermark: changes, deletes of checkpointed entities,
    # new entities (one deleted again), an entity deleted before W set again.
    await topics.write(sets(*(target(i, f"changed {i}") for i in range(5)), target(25, "back"), zone(2)))
    await topics.write(dels(TARGET, *(f"t{i}" for i in range(5, 10))))
    await topics.write(sets(*(target(i) for i in range(30, 35))))
    await topics.write(dels(TARGET, "t31") + dels(ZONE, "z1"))

    state, svc = await restarted(env, example_app, tmp_path)
    assert svc.checkpoints is not None and svc.checkpoints.loaded == path
    assert state == await full_replay(env, example_app)
    seen = names(state)
    assert seen["t0"] == "changed 0" and seen["t25"] == "back" and seen["t20"] == "n20"
    assert not {"t5", "t9", "t26", "t31"} & set(seen)
    assert len(seen) == 30 - 5 - 5 + 1 + 4


async def test_the_running_service_writes_checkpoints_by_itself(
    topics: Topics, example_app: App, tmp_path: Path
) -> None:
    env = {**topics.env, "MYKO_CHECKPOINT_DIR": str(tmp_path), "MYKO_CHECKPOINT_INTERVAL_MS": "1000"}
    svc = RepoService(RepoSettings.from_env({**env, "MYKO_CHECKPOINT_EVERY_RECORDS": "5"}), example_app)
    await svc.start()
    try:
        assert svc.checkpoints is not None
        await topics.write(sets(*(target(i) for i in range(10))))
        for _ in range(150):  # up to ~30 s
            if svc.checkpoints.files():
                break
            await asyncio.sleep(0.2)
        first = svc.checkpoints.files()[0]
        header, states = checkpoint_file.read(first)
        assert header.entities == len(states[TARGET].encoded) == 10
    finally:
        await svc.stop()
    state, restarted_svc = await restarted(env, example_app, tmp_path)
    assert restarted_svc.checkpoints is not None and restarted_svc.checkpoints.loaded == first
    assert len(names(state)) == 10


# Filler Targets, one per partition (Topics.write's partitioner): writing them rolls every
# partition's active segment, which the cleaner never touches.
FILLERS = [next(i for i in range(100, 200) if partition_of(b"t%d" % i) == p) for p in range(3)]


async def fill(topics: Topics, round_: int) -> None:
    await topics.write(sets(*(target(i, f"filler {round_}") for i in FILLERS)))


async def _wait_compacted(topics: Topics, topic: str, *, gone: set[bytes]) -> None:
    """Write filler records until no record of `gone` keys is left in `topic`."""
    async with asyncio.timeout(150):
        round_ = 0
        while True:
            keys = {r.key for r in await read_topic(topics.kafka.bootstrap_servers, topic)}
            if not gone & keys:
                return
            round_ += 1
            await fill(topics, round_)
            await asyncio.sleep(0.5)


async def test_a_restart_from_a_checkpoint_is_exact_under_compaction(
    topics: Topics, example_app: App, tmp_path: Path
) -> None:
    env = topics.env
    await topics.create(example_app, EAGER_COMPACTION)
    await topics.write(sets(*(target(i) for i in range(20))))
    path = await checkpointed(env, example_app, tmp_path)
    # Past W: t0..t9 overwritten in several rounds, t10..t12 deleted, t13 set then deleted.
    for r in range(4):
        await topics.write(sets(*(target(i, f"round {r}") for i in range(10))))
        await asyncio.sleep(0.15)
    await topics.write(dels(TARGET, "t10", "t11", "t12") + sets(target(13, "late")))
    await topics.write(dels(TARGET, "t13"))
    await asyncio.sleep(0.15)
    # Compaction must have removed superseded records past the checkpoint's watermark.
    header = checkpoint_file.read_header(path)
    w = header.topics[topics.topic(TARGET)].watermark
    async with asyncio.timeout(150):
        filler = 0
        while True:
            records = await read_topic(topics.kafka.bootstrap_servers, topics.topic(TARGET))
            past_w = [r for r in records if r.offset >= w[r.partition]]
            if not [r for r in past_w if r.value and b"round 0" in r.value]:
                break
            filler += 1
            await fill(topics, filler)
            await asyncio.sleep(0.5)

    state, svc = await restarted(env, example_app, tmp_path)
    assert svc.checkpoints is not None and svc.checkpoints.loaded == path
    assert state == await full_replay(env, example_app)
    seen = names(state)
    assert all(seen[f"t{i}"] == "round 3" for i in range(10))
    assert not {"t10", "t11", "t12", "t13"} & set(seen)
    assert seen["t14"] == "n14"


async def test_a_checkpoint_older_than_delete_retention_is_refused_once_tombstones_can_be_gone(
    topics: Topics, example_app: App, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = topics.env
    await topics.create(example_app, {**EAGER_COMPACTION, "delete.retention.ms": "1000"})
    await topics.write(sets(*(target(i) for i in range(5))))
    path = await checkpointed(env, example_app, tmp_path)
    await topics.write(dels(TARGET, "t0"))
    # The cleaner removes the tombstone for good (and t0's SET before it).
    await _wait_compacted(topics, topics.topic(TARGET), gone={b"t0"})
    # What taking the checkpoint would have done: t0 is in it, and nothing left in the topic deletes it.
    _, old = checkpoint_file.read(path)
    assert "t0" in old[TARGET].encoded

    with caplog.at_level(logging.WARNING, logger="myko.checkpoints"):
        state, svc = await restarted(env, example_app, tmp_path)
    assert svc.checkpoints is not None and svc.checkpoints.loaded is None
    assert [why for _, why in svc.checkpoints.refused if "delete.retention.ms" in why]
    assert any("refused" in r.getMessage() for r in caplog.records)
    assert "t0" not in names(state)
    assert state == await full_replay(env, example_app)


async def test_a_checkpoint_of_a_recreated_topic_is_refused(
    topics: Topics, example_app: App, tmp_path: Path
) -> None:
    from test_topic_rewrite import recreate

    env = topics.env
    await topics.create(example_app, {})
    await topics.write(sets(*(target(i) for i in range(5))))
    await checkpointed(env, example_app, tmp_path)
    spec = next(
        s for s in entity_topics(topics.kafka, example_app.entities) if s.name == topics.topic(TARGET)
    )
    await recreate(topics.kafka.bootstrap_servers, spec.name, spec.partitions, spec.config)
    # Filled past the checkpoint's watermark: offsets alone would not tell.
    await topics.write(sets(*(target(i, "new history") for i in range(7, 40))))

    state, svc = await restarted(env, example_app, tmp_path)
    assert svc.checkpoints is not None and svc.checkpoints.loaded is None
    assert [why for _, why in svc.checkpoints.refused if "recreated" in why]
    seen = names(state)
    assert "t0" not in seen and seen["t7"] == "new history"
    assert state == await full_replay(env, example_app)


@pytest.mark.parametrize("damage", ["truncated", "flipped byte"])
async def test_a_damaged_checkpoint_is_refused_and_the_service_replays(
    topics: Topics, example_app: App, tmp_path: Path, damage: str
) -> None:
    env = topics.env
    await topics.create(example_app, {})
    await topics.write(sets(*(target(i) for i in range(20))))
    path = await checkpointed(env, example_app, tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        del data[len(data) * 2 // 3 :]
    else:
        data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    await topics.write(sets(target(3, "after")) + dels(TARGET, "t4"))

    state, svc = await restarted(env, example_app, tmp_path)
    assert svc.checkpoints is not None and svc.checkpoints.loaded is None
    assert [p for p, _ in svc.checkpoints.refused] == [path]
    seen = names(state)
    assert seen["t3"] == "after" and "t4" not in seen and len(seen) == 19
    assert state == await full_replay(env, example_app)


async def test_a_checkpoint_cut_short_by_a_crash_is_ignored(
    topics: Topics, example_app: App, tmp_path: Path
) -> None:
    env = topics.env
    await topics.create(example_app, {})
    await topics.write(sets(*(target(i) for i in range(20))))
    whole = await checkpointed(env, example_app, tmp_path)
    await topics.write(sets(target(1, "after")))
    # A newer checkpoint whose writer died mid-way: only its temporary file exists.
    data = whole.read_bytes()
    partial = whole.parent / "checkpoint-9999999999999999.partial"
    partial.write_bytes(data[: len(data) // 2])

    state, svc = await restarted(env, example_app, tmp_path)
    assert svc.checkpoints is not None and svc.checkpoints.loaded == whole
    assert not partial.exists()
    assert names(state)["t1"] == "after"
    assert state == await full_replay(env, example_app)


async def start_command(env: dict[str, str], app: App, directory: Path | None) -> CommandService:
    return await started(CommandService(CommandSettings.from_env(service_env(env, directory)), app))


def command_state(svc: CommandService) -> dict[str, tuple[dict[str, bytes], dict[str, tuple[str, int, int]]]]:
    """What command_svc's store holds per type: encodings and positions (it keeps no events)."""
    out = {}
    for name in svc.store.entities.names():
        encoded, positions, envelopes = svc.store.repo(name).stored_state()
        assert envelopes is None
        out[name] = (encoded, positions)
    return out


async def test_command_svc_restarts_from_its_checkpoint_to_the_state_of_a_full_replay(
    topics: Topics, example_app: App, tmp_path: Path
) -> None:
    env = topics.env
    await topics.create(example_app, {})
    await topics.write(sets(*(target(i) for i in range(20)), zone(1)))
    await topics.write(dels(TARGET, "t19"))
    path = await wrote_one(await start_command(env, example_app, tmp_path))
    await topics.write(sets(target(0, "after")) + dels(TARGET, "t1") + sets(target(40)))

    again = await start_command(env, example_app, tmp_path)
    try:
        assert again.checkpoints is not None and again.checkpoints.loaded == path
        state = command_state(again)
        assert state[TARGET][0]["t0"] == target(0, "after").SerializeToString(deterministic=True)
        assert "t1" not in state[TARGET][0] and "t19" not in state[TARGET][0] and "t40" in state[TARGET][0]
        # It serves commands on that state: a handler sees the checkpointed entities.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{again.grpc.port}") as channel:
            clients = Clients(command=channel, query=channel)
            await clients.execute(commands_pb2.SetTarget(id="t2", name="renamed after restart"))
    finally:
        await again.stop()
    replayed = await start_command(env, example_app, None)
    try:
        full = command_state(replayed)
    finally:
        await replayed.stop()
    assert full[TARGET][0]["t2"] != state[TARGET][0]["t2"]  # the command above changed it
    del full[TARGET][0]["t2"], full[TARGET][1]["t2"], state[TARGET][0]["t2"], state[TARGET][1]["t2"]
    assert full == state


def entities_only_app() -> App:
    """The example's entity types and no sagas: saga_svc's store alone is under test (the
    example's sagas would act on the Zone events and call a command_svc that is not there)."""
    app = App("checkpointed-sagas")
    app.entity(entities_pb2.Target)
    app.entity(entities_pb2.Zone)
    return app


async def start_sagas(env: dict[str, str], app: App, directory: Path | None) -> SagaService:
    settings = service_env(env, directory, MYKO_SAGA_PORT="0", MYKO_INSTANCE_ID="saga-under-test")
    return await started(SagaService(SagaSettings.from_env(settings), app))


def store_state(
    svc: SagaService,
) -> dict[str, tuple[dict[str, bytes], dict[str, tuple[str, int, int]], dict[str, bytes] | None]]:
    """What saga_svc's store holds per type: encodings, positions and events' envelopes."""
    return {name: svc.store.repo(name).stored_state() for name in svc.store.entities.names()}


async def test_saga_svc_restarts_from_its_checkpoint_to_the_state_of_a_full_replay(
    topics: Topics, tmp_path: Path
) -> None:
    """saga_svc's store (what sagas read, fenced against Kafka) starts from its own checkpoint
    and reads on from there: the state of a full replay, deletes past the checkpoint included."""
    env, app = topics.env, entities_only_app()
    await topics.create(app, {})
    await topics.write(sets(*(target(i) for i in range(20)), zone(1), zone(2)))
    await topics.write(dels(TARGET, "t19"))
    path = await wrote_one(await start_sagas(env, app, tmp_path))
    await topics.write(sets(target(0, "after"), target(40)) + dels(TARGET, "t1") + dels(ZONE, "z2"))

    again = await start_sagas(env, app, tmp_path)
    try:
        assert again.checkpoints is not None and again.checkpoints.loaded == path
        state = store_state(again)
        # SERVING: its store is at the topics' ends, as the sagas' fence requires.
        assert again.store.watermark.covers(await again.reader.end_offsets())
    finally:
        await again.stop()
    encoded = state[TARGET][0]
    assert encoded["t0"] == target(0, "after").SerializeToString(deterministic=True)
    assert "t1" not in encoded and "t19" not in encoded and "t40" in encoded
    assert "z2" not in state[ZONE][0] and "z1" in state[ZONE][0]
    replayed = await start_sagas(env, app, None)
    try:
        assert replayed.checkpoints is None
        assert store_state(replayed) == state
    finally:
        await replayed.stop()
