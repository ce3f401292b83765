"""The tx log's bounded index and a result's size bound, without a broker."""

from __future__ import annotations

import random
import tracemalloc
import uuid

from counters import COUNTER, Counter

from myko.command_result import build_result, result_size_bound
from myko.events import set_event
from myko.memory_log import MemoryLog
from myko.ports import Proposal
from myko.quarantine import Quarantine
from myko.txlog import TxLog, TxLogLimits, txlog_record
from myko.v1 import command_pb2, item_pb2

DIGEST = b"d" * 32


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now_ms


def result_of(tx: str, payload: int = 0) -> command_pb2.CommandResult:
    c = Counter(value=1, payload=b"p" * payload)
    c.item.id = tx
    c.item.type = COUNTER
    ev = set_event(c, tx=tx, ts=c.item.updated_at, source="s")
    return build_result(
        Proposal(tx=tx, digest=DIGEST, command_type="mykotest.v1.Add", events=[ev]),
        [item_pb2.Offset(topic=COUNTER, partition=0, offset=7)],
    )


def test_the_index_keeps_the_last_n_txs() -> None:
    log = MemoryLog()
    txlog = TxLog("tx", TxLogLimits(max_age_ms=60_000, max_txs=3), log)
    txs = [str(uuid.uuid4()) for _ in range(5)]
    for i, tx in enumerate(txs):
        txlog.remember(tx, DIGEST, result_of(tx), 0, i)
    assert len(txlog) == 3
    assert [txlog.lookup(tx) is not None for tx in txs] == [False, False, True, True, True]


def test_the_index_forgets_txs_older_than_the_window() -> None:
    clock = Clock()
    txlog = TxLog("tx", TxLogLimits(max_age_ms=60_000, max_txs=100), MemoryLog(), clock_ms=clock)
    old, young = str(uuid.uuid4()), str(uuid.uuid4())
    txlog.remember(old, DIGEST, result_of(old), 0, 0)
    clock.now_ms += 30_000
    txlog.remember(young, DIGEST, result_of(young), 0, 1)
    clock.now_ms += 30_001
    assert txlog.lookup(old) is None and txlog.lookup(young) is not None
    assert len(txlog) == 1


async def test_results_beyond_the_cache_are_read_back_from_the_log() -> None:
    log = MemoryLog()
    log.create("tx", 1)
    txlog = TxLog("tx", TxLogLimits(max_age_ms=60_000, max_txs=100, result_cache_bytes=1000), log)
    txs = [str(uuid.uuid4()) for _ in range(10)]
    results = {tx: result_of(tx, payload=300) for tx in txs}
    for tx in txs:
        (rec,) = log.append([txlog_record("tx", tx, DIGEST, results[tx])])
        txlog.apply_records([rec], Quarantine("test"))
    assert txlog.cached_result_bytes <= 1000 and len(txlog) == 10
    for tx in txs:
        entry = txlog.lookup(tx)
        assert entry is not None and entry.digest == DIGEST
        assert (await txlog.result(entry)).SerializeToString() == results[tx].SerializeToString()


def test_an_index_entry_costs_a_few_hundred_bytes_whatever_the_result_size() -> None:
    n = 10_000
    txs = [str(uuid.uuid4()) for _ in range(n)]
    big = result_of("x", payload=2000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        txlog = TxLog("tx", TxLogLimits(max_age_ms=60_000, max_txs=n, result_cache_bytes=0), MemoryLog())
        for i, tx in enumerate(txs):
            txlog.remember(tx, DIGEST, big, 0, i)
        per_tx = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert len(txlog) == n
    assert per_tx < 300, f"{per_tx:.0f} bytes per indexed tx"


def test_the_size_bound_is_never_below_the_real_result_and_close_to_it() -> None:
    rng = random.Random(5)
    for _ in range(200):
        tx = str(uuid.uuid4())
        events = []
        for i in range(rng.randint(0, 40)):
            c = Counter(value=rng.randint(-(2**40), 2**40), payload=b"x" * rng.randint(0, 300))
            c.item.id = f"c{i}-{rng.random()}"
            c.item.type = COUNTER
            events.append(set_event(c, tx=tx, ts=c.item.updated_at, source="src"))
        proposal = Proposal(tx=tx, digest=DIGEST, command_type="mykotest.v1.Fill", events=events)
        landed = [
            item_pb2.Offset(topic="p." + COUNTER, partition=rng.randint(0, 2), offset=rng.randint(0, 2**62))
            for _ in events
        ]
        actual = build_result(proposal, landed).ByteSize()
        bound = result_size_bound(proposal, topic_of=lambda t: "p." + t, partitions_of=lambda t: 3)
        assert actual <= bound <= actual + 20 * len(events) + 100
