"""The ports of the command core: what CommandBus needs from the outside world.

Three interfaces, each with a Kafka adapter (production) and an in-memory one
(tests and local experiments), and one contract test suite both pass
(tests/test_core_contract.py):

- `Publisher`: commits the proposals of a group of commands, their events and
  their tx-log records, all or nothing (Kafka: `publisher.TransactionalPublisher`;
  memory: `memory_publisher.MemoryPublisher`).
- `Feed`: reads committed records in order and hands them, batch by batch, to
  the Store and the tx log; knows where the log ends (Kafka: `reader.TopicReader`;
  memory: `memory_feed.MemoryFeed`).
- `RecordSource`: reads one committed record back by position, which is how the
  tx log answers a retry of an old tx without keeping every result in memory
  (Kafka: `record_fetcher.KafkaRecordFetcher`; memory: `memory_log.MemoryLog`).

The tx log itself (`txlog.TxLog`) is the same code over either: a bounded index
fed by a Feed, reading results back through a RecordSource.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from opentelemetry.context import Context

from myko.v1 import command_pb2, item_pb2
from myko.watermark import TopicPartition


@dataclass
class Proposal:
    """One command's outcome, ready to be written."""

    tx: str
    digest: bytes
    command_type: str
    events: list[item_pb2.Event]
    # The command's trace context (its commit span): parent of the Kafka write's span.
    trace: Context | None = None


@dataclass(frozen=True)
class Committed:
    """What a commit did for one proposal: the answer, and where its tx-log record is."""

    result: command_pb2.CommandResult
    txlog_partition: int
    txlog_offset: int


class Publisher(Protocol):
    @property
    def max_result_bytes(self) -> int:
        """The largest CommandResult a commit may produce."""
        ...

    def topic_of(self, entity_type: str) -> str:
        """The topic an entity type's events are written to."""
        ...

    def check_size(self, proposal: Proposal) -> int:
        """The most bytes the proposal's result can take; LimitExceeded over max_result_bytes."""
        ...

    async def commit(self, proposals: Sequence[Proposal]) -> list[Committed]:
        """Write every proposal's events and tx-log record in one transaction.

        The tx-log record holds the result's logged form (command_result.logged_result:
        no offsets), so it can be sent with the events. Returns one Committed per
        proposal, in order, once all is durable, with the full result. Raises
        LimitExceeded (nothing written) for an oversized proposal, Fenced when another
        writer took over, Unavailable when the outcome is unknown: nothing may have
        been written, or everything (the answer was lost), never a part.
        """
        ...


class Feed(Protocol):
    """Reads committed records of a set of topics, in order per partition."""

    async def start(self) -> None:
        """Begin reading from the beginning (or, for a topic given a ReadWindow, from the
        window's start); return once reading has begun."""
        ...

    async def stop(self) -> None: ...

    async def wait_caught_up(self, *, timeout_s: float | None = None) -> None:
        """Return once everything committed before start() has been handed over."""
        ...

    async def end_offsets(self) -> dict[TopicPartition, int]:
        """Where each partition read ends now: everything committed so far lies before."""
        ...


@dataclass(frozen=True)
class ReadWindow:
    """Read only the tail of a topic: records younger than `max_age_ms`, and at most the
    last `max_offsets` offsets of each partition (the start is the later of the two)."""

    max_age_ms: int
    max_offsets: int


class RecordSource(Protocol):
    async def fetch(
        self, topic: str, partition: int, offset: int
    ) -> tuple[bytes | None, bytes | None] | None:
        """(key, value) of the committed record at that position; None when it is gone."""
        ...
