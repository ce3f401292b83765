"""The contract of the command core's ports, passed by both the in-memory and the Kafka adapters.

Each case runs twice: against MemoryLog/MemoryPublisher/MemoryFeed and against
TransactionalPublisher/TopicReader/KafkaRecordFetcher on the real test broker.
What CommandBus relies on (tests/test_command_bus.py runs it on the in-memory
side only) is stated here once, so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import pytest
from core_backends import MAX_RESULT_BYTES, Backend, KafkaBackend, MemoryBackend
from counters import COUNTER, Counter

from myko.command_result import without_offsets
from myko.errors import Fenced, LimitExceeded
from myko.events import H_TX, set_event, to_record
from myko.ports import Committed, Feed, Proposal, ReadWindow
from myko.quarantine import Quarantine
from myko.txlog import H_DIGEST, TxLog, TxLogLimits, command_digest
from myko.watermark import Watermark

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    if request.param == "memory":
        yield MemoryBackend()
        return
    kafka = KafkaBackend(request.getfixturevalue("kafka_bootstrap"), request.getfixturevalue("topic_prefix"))
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.close()


def proposal(*ids: str, payload: int = 10) -> Proposal:
    tx = str(uuid.uuid4())
    events = []
    for i in ids:
        c = Counter(value=1, payload=b"x" * payload)
        c.item.id = i
        c.item.type = COUNTER
        events.append(set_event(c, tx=tx, ts=c.item.updated_at, source="contract"))
    return Proposal(
        tx=tx, digest=command_digest("t/" + tx, b""), command_type="mykotest.v1.Fill", events=events
    )


class Collected:
    """Everything a feed hands over, and the watermark after the last batch."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.watermark = Watermark()

    def __call__(self, records: Sequence[Any], watermark: Watermark) -> None:
        self.records.extend(records)
        self.watermark = watermark

    def on(self, topic: str) -> list[Any]:
        return [r for r in self.records if r.topic == topic]


async def read_all(
    backend: Backend, windows: Mapping[str, ReadWindow] | None = None
) -> tuple[Collected, Feed]:
    """A fresh feed, read until it has caught up with everything committed before."""
    got = Collected()
    feed = backend.feed(got, windows)
    await feed.start()
    await feed.wait_caught_up(timeout_s=30)
    return got, feed


def visible_at(c: Committed) -> dict[tuple[str, int], int]:
    return {(o.topic, o.partition): o.offset for o in c.result.visible_at.positions}


async def test_a_commit_answers_where_each_event_landed_and_the_feed_reads_exactly_that(
    backend: Backend,
) -> None:
    two, one = proposal("a", "b"), proposal("c")
    committed = await backend.publisher.commit([two, one])
    assert [c.result.tx for c in committed] == [two.tx, one.tx]
    assert [[e.id for e in c.result.events] for c in committed] == [["a", "b"], ["c"]]
    got, feed = await read_all(backend)
    try:
        for c in committed:
            assert got.watermark.covers(visible_at(c))
            for ev in c.result.events:
                (rec,) = [
                    r
                    for r in got.on(ev.offset.topic)
                    if (r.partition, r.offset) == (ev.offset.partition, ev.offset.offset)
                ]
                assert rec.key.decode() == ev.id and dict(rec.headers)[H_TX].decode() == c.result.tx
            # One tx-log record per command: key tx, the digest, the result but for the
            # offsets (sent with the events, before they were known).
            (logged,) = [r for r in got.on(backend.txlog_topic) if r.key.decode() == c.result.tx]
            assert (logged.partition, logged.offset) == (c.txlog_partition, c.txlog_offset)
            assert logged.value == without_offsets(c.result).SerializeToString()
            assert c.result.events and all(ev.HasField("offset") for ev in c.result.events)
        assert dict(logged.headers)[H_DIGEST] == one.digest
    finally:
        await feed.stop()


async def test_end_offsets_cover_every_commit_so_far(backend: Backend) -> None:
    got, feed = await read_all(backend)
    try:
        committed = [
            *await backend.publisher.commit([proposal("a")]),
            *await backend.publisher.commit([proposal("b")]),
        ]
        ends = await feed.end_offsets()
        for c in committed:
            assert Watermark(ends).covers(visible_at(c))
        async with asyncio.timeout(30):
            while not got.watermark.covers(ends):  # noqa: ASYNC110 - the feed's own pace
                await asyncio.sleep(0.01)
        assert {r.key.decode() for r in got.on(backend.topic_of(COUNTER))} == {"a", "b"}
    finally:
        await feed.stop()


async def test_an_oversized_proposal_is_refused_before_anything_is_written(backend: Backend) -> None:
    fits = proposal("small")
    huge = proposal(*(f"big-{i}" for i in range(40)), payload=10_000)
    assert backend.publisher.check_size(fits) <= MAX_RESULT_BYTES
    with pytest.raises(LimitExceeded) as err:
        backend.publisher.check_size(huge)
    assert err.value.limit == "MYKO_MAX_RESULT_BYTES"
    got, feed = await read_all(backend)
    before = await feed.end_offsets()
    with pytest.raises(LimitExceeded):
        await backend.publisher.commit([fits, huge])
    assert await feed.end_offsets() == before
    await feed.stop()
    assert got.records == []


async def test_a_fresh_tx_log_finds_committed_txs_and_reads_their_results_back(backend: Backend) -> None:
    committed = await backend.publisher.commit([proposal("a"), proposal("b", "c")])
    txlog = TxLog(
        backend.txlog_topic,
        TxLogLimits(max_age_ms=3_600_000, max_txs=10, result_cache_bytes=0),
        backend.source,
    )
    got, feed = await read_all(backend)
    await feed.stop()
    txlog.apply_records(got.records, Quarantine("test"))
    for c in committed:
        entry = txlog.lookup(c.result.tx)
        assert entry is not None and (entry.partition, entry.offset) == (c.txlog_partition, c.txlog_offset)
        again = await txlog.result(entry)
        assert again.SerializeToString() == without_offsets(c.result).SerializeToString()
    assert await backend.source.fetch(
        backend.txlog_topic, committed[0].txlog_partition, committed[0].txlog_offset
    ) == (
        committed[0].result.tx.encode(),
        without_offsets(committed[0].result).SerializeToString(),
    )


async def test_a_windowed_feed_reads_only_the_tail_of_the_tx_log(backend: Backend) -> None:
    txs = []
    for i in range(10):
        (c,) = await backend.publisher.commit([proposal(f"c{i}")])
        txs.append(c.result.tx)
    got, feed = await read_all(
        backend, {backend.txlog_topic: ReadWindow(max_age_ms=3_600_000, max_offsets=4)}
    )
    await feed.stop()
    tail = [r.key.decode() for r in got.on(backend.txlog_topic)]
    # At most 4 offsets back; a commit marker may take every other one (Kafka).
    assert 2 <= len(tail) <= 4 and tail == txs[-len(tail) :]
    assert len(got.on(backend.topic_of(COUNTER))) == 10  # other topics are read whole


async def test_a_windowed_feed_skips_tx_log_records_older_than_its_age(backend: Backend) -> None:
    (old,) = await backend.publisher.commit([proposal("old")])
    # Ages count from when the feed starts: the window is wide enough that a loaded
    # machine's delay between the young commit and that start does not age it out too.
    await asyncio.sleep(4.5)
    (young,) = await backend.publisher.commit([proposal("young")])
    got, feed = await read_all(backend, {backend.txlog_topic: ReadWindow(max_age_ms=4000, max_offsets=1000)})
    await feed.stop()
    assert [r.key.decode() for r in got.on(backend.txlog_topic)] == [young.result.tx]
    assert old.result.tx not in {r.key.decode() for r in got.records}


async def test_another_producers_transaction_is_read_like_our_own(backend: Backend) -> None:
    rival = proposal("rival")
    await backend.write_foreign([to_record(ev, backend.topic_of(COUNTER)) for ev in rival.events])
    (ours,) = await backend.publisher.commit([proposal("ours")])
    got, feed = await read_all(backend)
    await feed.stop()
    assert {r.key.decode() for r in got.on(backend.topic_of(COUNTER))} == {"rival", "ours"}
    assert got.watermark.covers(visible_at(ours))


async def test_a_publisher_whose_identity_was_taken_over_is_fenced(backend: Backend) -> None:
    await backend.publisher.commit([proposal("before")])
    successor = await backend.take_over()
    with pytest.raises(Fenced):
        await backend.publisher.commit([proposal("after")])
    # Fenced for good: it never takes the identity back (which would fence the
    # successor in turn), and the successor keeps writing.
    with pytest.raises(Fenced):
        await backend.publisher.commit([proposal("again")])
    await successor.commit([proposal("successor")])
    got, feed = await read_all(backend)
    await feed.stop()
    assert {r.key.decode() for r in got.on(backend.topic_of(COUNTER))} == {"before", "successor"}
