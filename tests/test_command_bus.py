"""CommandBus behaviour without a broker: the in-memory adapters (MemoryCore), the counters domain.

Group commit, stale reruns (sync handlers inside the writer, async ones by their
callers), conflicts, once-only (sequential, concurrent, after failed commits,
callers giving up mid-commit, across restarts), a reused tx, the dedupe window
(by count and by age, with a virtual clock) and the result size limit.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from counters import COUNTER, Add, Counter, Fill, counter_app
from polling import eventually

from myko.app import App
from myko.command_result import without_offsets
from myko.errors import Conflict, Fenced, InvalidArgument, LimitExceeded, Unavailable
from myko.events import set_event, to_record
from myko.memory_core import MemoryCore, request
from myko.memory_log import MemoryLog
from myko.memory_publisher import Failure
from myko.txlog import TxLogLimits
from myko.v1.command_pb2 import CommandResult
from myko.watermark import Watermark

pytestmark = pytest.mark.timeout(30)


def new_tx() -> str:
    return str(uuid.uuid4())


class VirtualClock:
    def __init__(self) -> None:
        self.now_ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now_ms


@asynccontextmanager
async def running(app: App, **kwargs: Any) -> AsyncIterator[MemoryCore]:
    core = MemoryCore(app, **kwargs)
    async with core:
        yield core


def value_of(core: MemoryCore, counter_id: str) -> int:
    found = core.store.of(Counter).get(counter_id)
    return 0 if found is None else int(found.value)


def records_of(log: MemoryLog, topic: str) -> list[Any]:
    return [r for tp in log.tps([topic]) for r in log.read(tp, 0, max_records=1_000_000)]


def tx_records(core: MemoryCore) -> list[str]:
    return [r.key.decode() for r in records_of(core.log, core.txlog_topic)]


# --- the basics --------------------------------------------------------------------------


async def test_a_command_commits_its_events_and_the_store_shows_them() -> None:
    app, _ = counter_app()
    async with running(app) as core:
        result = await core.execute(Add(id="a", by=3))
        (event,) = result.events
        assert (event.type, event.id, result.command_type) == (COUNTER, "a", "mykotest.v1.Add")
        assert core.store.watermark.covers(
            {(o.topic, o.partition): o.offset for o in result.visible_at.positions}
        )
        assert value_of(core, "a") == 3


async def test_group_commit_puts_what_arrived_during_a_commit_into_the_next_transaction() -> None:
    app, _ = counter_app()
    async with running(app) as core:
        before = core.log.transactions
        core.publisher.hold()
        first = asyncio.create_task(core.execute(Add(id="c0", by=1)))
        await eventually(core.publisher.held.is_set)
        rest = [asyncio.create_task(core.execute(Add(id=f"c{i}", by=1))) for i in range(1, 20)]
        await asyncio.sleep(0.01)  # every caller has submitted by now
        core.publisher.release()
        await asyncio.gather(first, *rest)
        assert core.log.transactions - before == 2  # the first alone, then the 19 together
        assert all(value_of(core, f"c{i}") == 1 for i in range(20))


async def test_an_answer_waits_until_the_store_has_read_the_write_back() -> None:
    app, _ = counter_app()
    async with running(app) as core:
        core.feed.hold()  # the store lags behind the log
        first = asyncio.create_task(core.execute(Add(id="a", by=1)))
        await eventually(lambda: core.log.transactions > 0)
        await asyncio.sleep(0.05)
        assert not first.done()  # committed, not yet answered
        core.feed.release()
        await first
        # So the next command's handler builds on it: no lost update.
        await core.execute(Add(id="a", by=1))
        assert value_of(core, "a") == 2


# --- stale reads ------------------------------------------------------------------------


async def test_sync_handlers_are_rerun_inside_the_writer_and_never_conflict() -> None:
    # No retries for callers: contention must be resolved by the writer's reruns alone.
    app, runs = counter_app()
    async with running(app, conflict_retries=0) as core:
        await core.execute(Add(id="hot", by=0))
        txs = [new_tx() for _ in range(40)]
        await asyncio.gather(*(core.execute(Add(id="hot", by=1), tx=tx) for tx in txs))
        assert value_of(core, "hot") == 40  # no lost update
        assert sum(runs[tx] for tx in txs) > 40  # stale proposals were run again...
        assert sorted(tx_records(core)[1:]) == sorted(txs)  # ... and each committed once


async def test_async_handlers_rerun_on_fresh_state_by_their_callers() -> None:
    app, runs = counter_app(async_add=True)
    async with running(app, conflict_retries=50) as core:
        txs = [new_tx() for _ in range(20)]
        await asyncio.gather(*(core.execute(Add(id="hot", by=1), tx=tx) for tx in txs))
        assert value_of(core, "hot") == 20
        assert sum(runs[tx] for tx in txs) > 20


async def test_an_async_handler_whose_reads_keep_going_stale_gets_conflict() -> None:
    core_ref: list[MemoryCore] = []

    async def someone_else_writes() -> None:
        # Another writer changes the counter between the handler's read and its write.
        core = core_ref[0]
        rival = Counter(value=1000 + len(core_ref))
        core_ref.append(core)
        rival.item.id = "contested"
        rival.item.type = COUNTER
        ts = set_event(rival, tx=new_tx(), ts=rival.item.updated_at, source="rival")
        (written,) = core.log.append([to_record(ts, COUNTER)])
        await core.store.wait_for({(written.topic, written.partition): written.offset + 1}, timeout_s=5)

    app, runs = counter_app(async_add=True, pause=someone_else_writes)
    async with running(app, conflict_retries=3) as core:
        core_ref.append(core)
        tx = new_tx()
        with pytest.raises(Conflict):
            await core.execute(Add(id="contested", by=1), tx=tx)
        assert runs[tx] == 4  # the first run and three retries
        assert tx not in tx_records(core) and core.txlog.lookup(tx) is None


# --- once-only --------------------------------------------------------------------------


async def test_the_same_tx_again_returns_the_stored_result_and_acts_once() -> None:
    app, runs = counter_app()
    async with running(app) as core:
        tx = new_tx()
        first = await core.execute(Add(id="a", by=1), tx=tx)
        again = await core.execute(Add(id="a", by=1), tx=tx)
        assert again.SerializeToString() == first.SerializeToString()
        assert value_of(core, "a") == 1 and runs[tx] == 1


async def test_the_same_tx_sent_concurrently_runs_once() -> None:
    app, runs = counter_app()
    async with running(app) as core:
        tx = new_tx()
        results = await asyncio.gather(*(core.execute(Add(id="a", by=1), tx=tx) for _ in range(10)))
        assert all(r == results[0] for r in results)
        assert value_of(core, "a") == 1 and runs[tx] == 1 and tx_records(core) == [tx]


async def test_a_tx_reused_for_another_command_is_invalid_argument() -> None:
    app, _ = counter_app()
    async with running(app) as core:
        tx = new_tx()
        core.publisher.hold()
        first = asyncio.create_task(core.execute(Add(id="a", by=1), tx=tx))
        await eventually(core.publisher.held.is_set)
        with pytest.raises(InvalidArgument, match="tx"):  # while the first is being committed
            await core.execute(Add(id="a", by=2), tx=tx)
        core.publisher.release()
        await first
        with pytest.raises(InvalidArgument, match="already used for a different command"):
            await core.execute(Add(id="b", by=1), tx=tx)
        assert value_of(core, "a") == 1 and value_of(core, "b") == 0


async def test_a_commit_that_wrote_nothing_fails_retriably_and_the_retry_acts_once() -> None:
    app, _ = counter_app()
    async with running(app) as core:
        tx = new_tx()
        core.publisher.fail_next(Failure.NOTHING_WRITTEN)
        with pytest.raises(Unavailable):
            await core.execute(Add(id="a", by=1), tx=tx)
        assert value_of(core, "a") == 0
        await core.execute(Add(id="a", by=1), tx=tx)
        assert value_of(core, "a") == 1 and tx_records(core) == [tx]


async def test_a_commit_whose_answer_was_lost_is_found_by_the_retry() -> None:
    app, runs = counter_app()
    async with running(app) as core:
        tx = new_tx()
        core.publisher.fail_next(Failure.ANSWER_LOST)
        with pytest.raises(Unavailable):
            await core.execute(Add(id="a", by=1), tx=tx)
        # It landed: the retry (the writer settles first: reads to the end) replays it.
        retry = await core.execute(Add(id="a", by=1), tx=tx)
        assert value_of(core, "a") == 1 and runs[tx] == 1 and tx_records(core) == [tx]
        (event,) = retry.events
        assert event.id == "a"


@pytest.mark.parametrize("yields", [0, 1, 2, 5, 20])
async def test_a_caller_giving_up_mid_flight_and_retrying_at_once_acts_once(yields: int) -> None:
    app, _ = counter_app()
    async with running(app) as core:
        tx = new_tx()
        first = asyncio.create_task(core.execute(Add(id="a", by=1), tx=tx))
        for _ in range(yields):  # give up at different points: running, queued, committing
            await asyncio.sleep(0)
        first.cancel()
        retry = await core.execute(Add(id="a", by=1), tx=tx)
        assert await core.execute(Add(id="a", by=1), tx=tx) == retry
        assert value_of(core, "a") == 1 and tx_records(core) == [tx]


async def test_a_retry_racing_its_own_commit_is_caught_by_the_writer() -> None:
    app, runs = counter_app()
    async with running(app) as core:
        tx = new_tx()
        core.publisher.hold()
        hasty = asyncio.create_task(core.execute(Add(id="a", by=1), tx=tx))
        await eventually(core.publisher.held.is_set)  # its proposal is in the commit
        hasty.cancel()
        # Neither the tx log (not committed yet) nor a running first attempt (it gave
        # up) stops the retry here: the writer must, when its turn comes.
        retry = asyncio.create_task(core.execute(Add(id="a", by=1), tx=tx))
        await eventually(lambda: runs[tx] == 2)
        core.publisher.release()
        await retry
        assert value_of(core, "a") == 1 and tx_records(core) == [tx]


async def test_after_a_lost_answer_the_writer_reads_to_the_end_before_validating() -> None:
    app, _ = counter_app()
    async with running(app) as core:
        tx = new_tx()
        core.feed.hold()  # the commit lands, but this process has not read it yet
        core.publisher.fail_next(Failure.ANSWER_LOST)
        with pytest.raises(Unavailable):
            await core.execute(Add(id="a", by=1), tx=tx)
        retry = asyncio.create_task(core.execute(Add(id="a", by=1), tx=tx))
        await asyncio.sleep(0.05)
        assert not retry.done()  # the writer waits to settle
        core.feed.release()
        await retry
        assert value_of(core, "a") == 1 and tx_records(core) == [tx]


async def test_a_caller_giving_up_while_its_commit_is_held_does_not_fail_the_others() -> None:
    app, _ = counter_app()
    async with running(app) as core:
        core.publisher.hold()
        blocker = asyncio.create_task(core.execute(Add(id="first", by=1)))
        await eventually(core.publisher.held.is_set)
        tx = new_tx()
        hasty = asyncio.create_task(core.execute(Add(id="a", by=1), tx=tx))
        patient = [asyncio.create_task(core.execute(Add(id="a", by=1))) for _ in range(5)]
        await asyncio.sleep(0.01)
        hasty.cancel()
        retry = asyncio.create_task(core.execute(Add(id="a", by=1), tx=tx))
        core.publisher.release()
        await asyncio.gather(blocker, *patient)
        await retry
        assert value_of(core, "a") == 6  # five patient callers, and the hasty one once
        assert tx_records(core).count(tx) == 1


async def test_a_restarted_core_answers_old_txs_from_the_log() -> None:
    app, runs = counter_app()
    log = MemoryLog()
    tx = new_tx()
    async with running(app, log=log) as core:
        first = await core.execute(Add(id="a", by=1), tx=tx)
    async with running(app, log=log) as restarted:
        again = await restarted.execute(Add(id="a", by=1), tx=tx)
        assert_replayed(again, first)
        assert value_of(restarted, "a") == 1 and runs[tx] == 1


def assert_replayed(again: CommandResult, first: CommandResult) -> None:
    """A retry answered from the tx log: the same tx, command and events, byte for byte but
    for the offsets (not in the log), and a visible_at at or past every event."""
    assert without_offsets(again).SerializeToString() == without_offsets(first).SerializeToString()
    assert Watermark.from_proto(again.visible_at).covers(Watermark.from_proto(first.visible_at).positions)


async def test_results_no_longer_cached_are_read_back_with_a_visible_at_past_their_events() -> None:
    app, runs = counter_app()
    limits = TxLogLimits(max_age_ms=3_600_000, max_txs=1000, result_cache_bytes=0)
    async with running(app, limits=limits) as core:
        tx = new_tx()
        first = await core.execute(Fill(prefix="f", count=3, payload_bytes=10), tx=tx)
        assert core.txlog.cached_result_bytes == 0
        # Later writes to the same entities: the bound may pass them, never fall short.
        await core.execute(Fill(prefix="f", count=3, payload_bytes=10), tx=new_tx())
        again = await core.execute(Fill(prefix="f", count=3, payload_bytes=10), tx=tx)
        assert_replayed(again, first)
        assert runs[tx] == 1
        assert core.store.watermark.covers(Watermark.from_proto(again.visible_at).positions)


async def test_many_retries_answered_from_the_log_at_once_share_one_read_to_the_end() -> None:
    app, _ = counter_app()
    limits = TxLogLimits(max_age_ms=3_600_000, max_txs=1000, result_cache_bytes=0)
    async with running(app, limits=limits) as core:
        txs = [new_tx() for _ in range(20)]
        firsts = await asyncio.gather(
            *(core.execute(Add(id=f"c{i % 4}", by=1), tx=tx) for i, tx in enumerate(txs))
        )
        reads = 0
        end_offsets = core.feed.end_offsets

        async def counted() -> Any:
            nonlocal reads
            reads += 1
            return await end_offsets()

        core.feed.end_offsets = counted  # type: ignore[method-assign]
        agains = await asyncio.gather(
            *(core.execute(Add(id=f"c{i % 4}", by=1), tx=tx) for i, tx in enumerate(txs))
        )
        for first, again in zip(firsts, agains, strict=True):
            assert_replayed(again, first)
        assert [value_of(core, f"c{i}") for i in range(4)] == [5, 5, 5, 5]  # each took effect once
        assert reads < len(txs)


async def test_cached_results_are_answered_byte_for_byte() -> None:
    app, runs = counter_app()
    async with running(app) as core:
        tx = new_tx()
        first = await core.execute(Fill(prefix="f", count=3, payload_bytes=10), tx=tx)
        again = await core.execute(Fill(prefix="f", count=3, payload_bytes=10), tx=tx)
        assert again.SerializeToString() == first.SerializeToString() and runs[tx] == 1


# --- the dedupe window ------------------------------------------------------------------


async def test_the_window_keeps_the_last_n_txs_and_older_ones_may_apply_again() -> None:
    app, _ = counter_app()
    limits = TxLogLimits(max_age_ms=3_600_000, max_txs=3)
    async with running(app, limits=limits) as core:
        txs = [new_tx() for _ in range(4)]
        for tx in txs:
            await core.execute(Add(id="a", by=1), tx=tx)
        assert len(core.txlog) == 3
        await core.execute(Add(id="a", by=1), tx=txs[-1])  # within the last 3: once
        assert value_of(core, "a") == 4
        await core.execute(Add(id="a", by=1), tx=txs[0])  # fell out of the window: applies again
        assert value_of(core, "a") == 5


async def test_the_window_keeps_txs_younger_than_its_age() -> None:
    app, _ = counter_app()
    clock = VirtualClock()
    limits = TxLogLimits(max_age_ms=60_000, max_txs=1000)
    async with running(app, log=MemoryLog(clock_ms=clock), limits=limits) as core:
        tx = new_tx()
        await core.execute(Add(id="a", by=1), tx=tx)
        clock.now_ms += 59_000
        await core.execute(Add(id="a", by=1), tx=tx)
        assert value_of(core, "a") == 1
        clock.now_ms += 2_000
        assert core.txlog.lookup(tx) is None
        await core.execute(Add(id="a", by=1), tx=tx)
        assert value_of(core, "a") == 2


async def test_a_restart_reads_only_the_window_of_the_tx_log() -> None:
    app, _ = counter_app()
    log = MemoryLog()
    limits = TxLogLimits(max_age_ms=3_600_000, max_txs=5)
    txs = [new_tx() for _ in range(50)]
    async with running(app, log=log, limits=limits) as core:
        for tx in txs:
            await core.execute(Add(id="a", by=1), tx=tx)
    read: list[Any] = []
    restarted = MemoryCore(app, log=log, limits=limits)
    restarted.on_batch.append(
        lambda records: read.extend(r for r in records if r.topic == restarted.txlog_topic)
    )
    async with restarted:
        assert len(read) <= 2 * limits.max_txs  # 2N offsets back, not the whole history
        assert len(restarted.txlog) == 5
        for tx in txs[-5:]:
            await restarted.execute(Add(id="a", by=1), tx=tx)
        assert value_of(restarted, "a") == 50


# --- limits and fencing -----------------------------------------------------------------


async def test_a_result_over_the_limit_is_refused_before_anything_is_written() -> None:
    app, _ = counter_app()
    async with running(app, max_result_bytes=64 * 1024) as core:
        before = {tp: core.log.end_offset(tp) for tp in core.log.tps([COUNTER, core.txlog_topic])}
        tx = new_tx()
        with pytest.raises(LimitExceeded) as err:
            await core.execute(Fill(prefix="big", count=100, payload_bytes=1000), tx=tx)
        assert err.value.limit == "MYKO_MAX_RESULT_BYTES" and "split it" in err.value.message
        assert {tp: core.log.end_offset(tp) for tp in before} == before
        assert core.txlog.lookup(tx) is None
        small = await core.execute(Fill(prefix="small", count=10, payload_bytes=1000))
        assert len(small.events) == 10 and small.ByteSize() <= 64 * 1024


async def test_the_largest_result_that_fits_is_accepted() -> None:
    # Neither the early check while the handler writes nor the exact one before the
    # commit refuses a result that fits: the boundary is within one event of the limit.
    app, _ = counter_app()
    limit = 64 * 1024
    async with running(app, max_result_bytes=limit) as core:
        for count in range(80, 0, -1):
            try:
                result = await core.execute(Fill(prefix=f"n{count}", count=count, payload_bytes=1000))
                break
            except LimitExceeded:
                continue
        one_event = result.events[0].ByteSize() + 4
        assert limit - 2 * one_event < result.ByteSize() <= limit


async def test_a_rerun_that_grows_past_the_limit_fails_alone() -> None:
    # A sync handler re-run in the writer may write more than its first run did.
    app = App("growing")
    app.entity(Counter)
    limit = 16 * 1024

    def grow(cmd: Any, ctx: Any) -> None:
        current = ctx.get(Counter, cmd.id)
        value = 0 if current is None else current.value
        c = Counter(value=value + cmd.by, payload=b"x" * (2 * limit if value else 10))
        c.item.id = cmd.id
        ctx.set(c)

    app.command(Add)(grow)
    async with running(app, max_result_bytes=limit) as core:
        core.publisher.hold()
        blocker = asyncio.create_task(core.execute(Add(id="other", by=1)))
        await eventually(core.publisher.held.is_set)
        first = asyncio.create_task(core.execute(Add(id="g", by=1)))
        second = asyncio.create_task(core.execute(Add(id="g", by=1)))  # stale once `first` is accepted
        await asyncio.sleep(0.01)
        core.publisher.release()
        await blocker
        assert (await first).events
        with pytest.raises(LimitExceeded):
            await second
        assert value_of(core, "g") == 1


async def test_a_fenced_writer_stops_and_its_callers_may_retry_elsewhere() -> None:
    app, _ = counter_app()
    async with running(app) as core:
        core.publisher.fence()
        with pytest.raises(Fenced):
            await core.execute(Add(id="a", by=1))
        await eventually(lambda: not core.bus.running)
        with pytest.raises(Unavailable):
            await core.execute(Add(id="a", by=1))


async def test_a_command_over_the_command_limit_is_refused() -> None:
    app, _ = counter_app()
    async with running(app, max_command_bytes=1024) as core:
        with pytest.raises(LimitExceeded) as err:
            await core.bus.execute(request(Fill(prefix="p" * 2000, count=1)))
        assert err.value.limit == "MYKO_MAX_COMMAND_BYTES"
