"""Large commands against the real broker (issue 12, finding 5).

An ImportTargets of 30,000 targets (about 440 KB, under the 512 KiB command
limit) used to produce a 10.6 MB result that the broker refused at commit, and
the caller got UNAVAILABLE, which callers and sagas retry forever. Now a result
that could exceed MYKO_MAX_RESULT_BYTES is refused before anything is written,
with RESOURCE_EXHAUSTED naming the limit; one of several MB commits, and a retry
after a restart gets it back byte for byte from the tx log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest
from conftest import InProcessStack
from google.protobuf.message import Message
from kafka_inspect import read_topic, wait_committed_past
from myko_client import new_tx
from reactivex import Observable
from reactivex import operators as ops
from targets.v1 import commands_pb2, entities_pb2

from myko.app import App
from myko.client import Client
from myko.command_result import without_offsets
from myko.command_service import CommandService
from myko.dead_letter import H_ATTEMPTS, H_REASON, H_SAGA
from myko.errors import LimitExceeded
from myko.repo import Store
from myko.saga_event import SagaEvent
from myko.saga_service import SagaService
from myko.settings import CommandSettings, KafkaSettings, SagaSettings
from myko.status import exceeded_limit
from myko.topics import TX_LOG
from myko.v1 import command_pb2

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

TARGET_TOPIC = "targets.v1.Target"


def import_of(count: int, zone_id: str = "") -> commands_pb2.ImportTargets:
    return commands_pb2.ImportTargets(
        targets=[commands_pb2.SetTarget(name=f"target {i}", zone_id=zone_id) for i in range(count)]
    )


async def end_offsets(stack: InProcessStack, *topics: str) -> dict[tuple[str, int], int]:
    names = {stack.env["MYKO_TOPIC_PREFIX"] + t for t in topics}
    return {tp: end for tp, end in (await stack.command.reader.end_offsets()).items() if tp[0] in names}


@asynccontextmanager
async def stack_with_limit(
    env: dict[str, str], app: App, max_result_bytes: int
) -> AsyncIterator[InProcessStack]:
    s = await InProcessStack.start({**env, "MYKO_MAX_RESULT_BYTES": str(max_result_bytes)}, app)
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def limited_stack(myko_env: dict[str, str], example_app: App) -> AsyncIterator[InProcessStack]:
    # 256 KiB: a 30,000-target import is stopped after ~900 writes, so the test does not
    # hold the event loop (shared with the in-process leader lease) for long on a busy
    # machine. The default limit's refusal is the same code (tests/test_command_bus.py).
    async with stack_with_limit(myko_env, example_app, 256 * 1024) as s:
        yield s


@pytest.fixture
async def small_results_stack(myko_env: dict[str, str], example_app: App) -> AsyncIterator[InProcessStack]:
    async with stack_with_limit(myko_env, example_app, 64 * 1024) as s:
        yield s


async def execute_retrying(stack: InProcessStack, command: Message, tx: str) -> command_pb2.CommandResult:
    """As a client does: retry with the same tx while the answer is "try again" (on a busy
    machine the in-process leader lease can lapse while a large command holds the loop)."""
    for _attempt in range(10):
        try:
            return await stack.clients.execute(command, tx=tx, timeout_s=120)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            await asyncio.sleep(1.0)
    raise AssertionError(f"{tx} not acknowledged after 10 attempts")


async def test_a_result_too_large_to_commit_is_refused_up_front_with_resource_exhausted(
    limited_stack: InProcessStack,
) -> None:
    stack = limited_stack
    thirty_thousand = import_of(30_000)
    assert thirty_thousand.ByteSize() < 512 * 1024  # the command itself is within its limit
    before = await end_offsets(stack, TARGET_TOPIC, TX_LOG)
    tx = new_tx()
    for _attempt in range(2):  # and again: the same answer, not a retriable one
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.clients.execute(thirty_thousand, tx=tx, timeout_s=60)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "MYKO_MAX_RESULT_BYTES" in (err.value.details() or "")
        assert exceeded_limit(err.value.code(), "", err.value.trailing_metadata()) == "MYKO_MAX_RESULT_BYTES"
        assert time.monotonic() - started < 30
    assert await end_offsets(stack, TARGET_TOPIC, TX_LOG) == before  # nothing was written
    # The service is fine: the next command commits.
    await stack.clients.execute(commands_pb2.SetTarget(name="after"))


async def test_a_result_just_under_the_limit_commits_and_replays_after_a_restart(
    stack: InProcessStack,
) -> None:
    limit = KafkaSettings().max_result_bytes
    tx = new_tx()
    # Over 1 MiB, the broker's default max.message.bytes: the topics' own setting carries it.
    result = await execute_retrying(stack, import_of(4_000), tx)
    assert len(result.events) == 4_000
    assert 1024 * 1024 < result.ByteSize() <= limit
    # A second command_svc, with no result cache: it reads the tx log's window at
    # start and the multi-megabyte record back from Kafka for the retry.
    env = {**stack.env, "MYKO_TX_RESULT_CACHE_BYTES": "0", "MYKO_INSTANCE_ID": "second"}
    second = CommandService(CommandSettings.from_env(env), stack.app)
    await second.start()
    try:
        entry = second.txlog.lookup(tx)
        assert entry is not None
        again = await second.txlog.result(entry)
        # The logged form: everything but the offsets (docs/consistency.md, "What a retry returns").
        assert again.SerializeToString() == without_offsets(result).SerializeToString()
    finally:
        await second.stop()
    # And the serving one answers a retry with the same bytes, acting once.
    retry = await execute_retrying(stack, import_of(4_000), tx)
    assert retry.SerializeToString() == result.SerializeToString()
    records = await read_topic(stack.env["KAFKA_BOOTSTRAP_SERVERS"], stack.env["MYKO_TOPIC_PREFIX"] + TX_LOG)
    assert [r.key.decode() for r in records].count(tx) == 1


async def test_the_client_raises_limit_exceeded_not_a_retriable_error(limited_stack: InProcessStack) -> None:
    stack = limited_stack
    async with Client(command_addr=f"127.0.0.1:{stack.command.grpc.port}", timeout_s=60) as client:
        with pytest.raises(LimitExceeded) as err:
            await client.execute(import_of(30_000), tx=new_tx())
    assert err.value.limit == "MYKO_MAX_RESULT_BYTES" and not err.value.retriable
    assert "split it" in err.value.message


async def test_a_saga_dead_letters_a_command_over_a_limit_at_once(
    small_results_stack: InProcessStack, example_app: App
) -> None:
    stack = small_results_stack

    def zone_created(event: SagaEvent) -> bool:
        return event.is_set_of(entities_pb2.Zone) and event.is_created

    def import_into(event: SagaEvent) -> commands_pb2.ImportTargets:
        return import_of(500, zone_id=event.id)

    def too_large(events: Observable[SagaEvent], repos: Store) -> Observable[commands_pb2.ImportTargets]:
        return events.pipe(ops.filter(zone_created), ops.map(import_into))

    app = App("with-a-greedy-saga")
    app.include(example_app)
    app.saga("imports-too-much", sources=[entities_pb2.Zone])(too_large)
    env = {
        **stack.env,
        "MYKO_COMMAND_ADDR": f"127.0.0.1:{stack.command.grpc.port}",
        "MYKO_SAGA_PORT": "0",
        "MYKO_SAGA_GROUP_ID": "saga",
        "MYKO_SAGA_MAX_ATTEMPTS": "3",
        "MYKO_SAGA_BACKOFF_INITIAL_MS": "50",
        "MYKO_SAGA_BACKOFF_MAX_MS": "200",
    }
    settings = SagaSettings.from_env(env)
    kafka = settings.kafka
    async with asyncio.timeout(60):
        svc = SagaService(settings, app)
        await svc.start()
    try:
        zone = await stack.clients.execute(commands_pb2.SetZone(name="greedy"))
        (event,) = zone.events
        await wait_committed_past(
            kafka.bootstrap_servers,
            f"{kafka.topic_prefix}saga.imports-too-much",
            f"{kafka.topic_prefix}targets.v1.Zone",
            event.offset.partition,
            event.offset.offset,
        )
        letters = await read_topic(kafka.bootstrap_servers, kafka.topic_prefix + settings.dead_letter_topic)
    finally:
        await svc.stop()
    (letter,) = [r for r in letters if dict(r.headers)[H_SAGA] == b"imports-too-much"]
    headers = dict(letter.headers)
    assert headers[H_ATTEMPTS] == b"1"  # permanent: not retried, not waited on
    reason = headers[H_REASON].decode()
    assert "RESOURCE_EXHAUSTED" in reason and "MYKO_MAX_RESULT_BYTES" in reason
