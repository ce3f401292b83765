"""The in-memory Publisher: commits proposals to a MemoryLog, all or nothing.

Same records as the Kafka publisher (events on the entity topics, one tx-log
record per command), same results. For tests it can hold commits (to give up
mid-commit), fail the next one either before anything is written or after
everything was (the answer lost), or act fenced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from enum import Enum

from myko.command_result import check_result_size, completed, logged_result
from myko.errors import Fenced, Unavailable
from myko.events import to_record
from myko.memory_log import MemoryLog
from myko.ports import Committed, Proposal
from myko.txlog import txlog_record


class Failure(Enum):
    NOTHING_WRITTEN = "nothing written"
    ANSWER_LOST = "everything written, answer lost"


class MemoryPublisher:
    def __init__(
        self,
        log: MemoryLog,
        *,
        topic_of: Callable[[str], str],
        txlog_topic: str,
        max_result_bytes: int = 4 * 1024 * 1024,
        limit_name: str = "MYKO_MAX_RESULT_BYTES",
    ) -> None:
        self._log = log
        self._topic_of = topic_of
        self._txlog_topic = txlog_topic
        self._max_result_bytes = max_result_bytes
        self._limit_name = limit_name
        self._failures: list[Failure] = []
        self._fenced = False
        self._open = asyncio.Event()
        self._open.set()
        self.held = asyncio.Event()  # set while a commit waits at a closed gate
        self.commits = 0  # commit() calls that wrote something

    @property
    def max_result_bytes(self) -> int:
        return self._max_result_bytes

    # --- fault injection (tests) ------------------------------------------
    def fail_next(self, failure: Failure) -> None:
        self._failures.append(failure)

    def fence(self) -> None:
        self._fenced = True

    def hold(self) -> None:
        """Make commits wait (at the start) until release()."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    # --- the port ----------------------------------------------------------
    def topic_of(self, entity_type: str) -> str:
        return self._topic_of(entity_type)

    def check_size(self, proposal: Proposal) -> int:
        return check_result_size(
            proposal,
            topic_of=self._topic_of,
            partitions_of=self._log.partitions,
            max_bytes=self._max_result_bytes,
            limit_name=self._limit_name,
        )

    async def commit(self, proposals: Sequence[Proposal]) -> list[Committed]:
        for p in proposals:
            self.check_size(p)
        if not self._open.is_set():
            self.held.set()
            try:
                await self._open.wait()
            finally:
                self.held.clear()
        failure = self._failures.pop(0) if self._failures else None
        if self._fenced:
            raise Fenced("another writer took over (memory publisher fenced)")
        if failure is Failure.NOTHING_WRITTEN:
            raise Unavailable("commit failed, nothing was written (injected)")
        committed = []
        with self._log.transaction() as txn:
            for p in proposals:
                landed = []
                for ev in p.events:
                    at = txn.send(to_record(ev, self._topic_of(ev.type)))
                    landed.append((at.topic, at.partition, at.offset))
                # As the Kafka publisher: the record is sent with the events, before their offsets are known.
                logged = logged_result(p)
                rec = txn.send(txlog_record(self._txlog_topic, p.tx, p.digest, logged))
                committed.append(
                    Committed(
                        result=completed(logged, landed),
                        txlog_partition=rec.partition,
                        txlog_offset=rec.offset,
                    )
                )
        self.commits += 1
        if failure is Failure.ANSWER_LOST:
            raise Unavailable("commit outcome unknown (injected: it landed)")
        return committed
