"""The command writer: one task that validates proposals in arrival order and commits them in groups.

Handlers run concurrently in their callers' tasks and submit their proposals
here. Each round takes what arrived since the previous commit and goes through
four steps:

1. triage: drop proposals whose caller gave up (nothing is written for them; a
   retry runs again); answer those whose tx already took effect: the tx log is
   the last word on once-only, also for a retry whose first caller gave up
   mid-commit and so got past CommandBus.execute's own checks;
2. validate: in arrival order, against the store plus the writes accepted
   earlier in the round (first committer wins, docs/consistency.md). A stale
   proposal of a plain (sync) handler is re-run right here over that state, so
   contention on one entity costs no extra round trip; one of an async handler
   goes back to its caller to run again on fresh state;
3. commit: every accepted proposal in one transaction (group commit), then wait
   until the store has read it back, so the next round never validates against
   state older than an acknowledged write;
4. answer: each caller gets its result, "run again", or the commit's error.

A commit that failed may still have landed (its answer was lost), so the round
after one first reads to the end of the log (settle).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from myko.command_context import CommandContext
from myko.conflicts import ChangeTracker, Key
from myko.errors import Fenced, MykoError, Unavailable
from myko.metrics.command import CommandMetrics
from myko.ports import Proposal, Publisher
from myko.repo import Store
from myko.retry import Backoff
from myko.store_fence import StoreFence
from myko.txlog import TxEntry, TxLog
from myko.v1 import command_pb2

log = logging.getLogger(__name__)

# Most commands one round commits in one transaction (group commit).
MAX_GROUP_COMMANDS = 512

# Runs a sync handler again over store + overlay (the round's earlier writes).
Rerun = Callable[[Mapping[Key, Message | None]], CommandContext]

# What a submission comes back with: its result (committed in this round); the
# entry of its tx when that had already taken effect (the caller replays it);
# None when its reads went stale and the handler must run again.
Outcome = command_pb2.CommandResult | TxEntry | None


@dataclass
class Submission:
    proposal: Proposal
    reads: dict[Key, int]
    scans: dict[str, int]
    writes: Mapping[Key, Message | None]
    rerun: Rerun | None  # None for async handlers
    size_bound: int  # bytes its result can take at most
    future: asyncio.Future[Outcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Round:
    """The validation state of one round: what is accepted and what it writes."""

    accepted: list[Submission] = field(default_factory=list)
    run_again: list[Submission] = field(default_factory=list)
    # A tx accepted earlier in this round (a retry racing its own first attempt).
    repeats: list[Submission] = field(default_factory=list)
    overlay: dict[Key, Message | None] = field(default_factory=dict)
    written_types: set[str] = field(default_factory=set)
    txs: set[str] = field(default_factory=set)

    def accept(self, sub: Submission) -> None:
        self.accepted.append(sub)
        self.txs.add(sub.proposal.tx)
        self.overlay.update(sub.writes)
        self.written_types |= {t for t, _ in sub.writes}

    def invalidates(self, sub: Submission) -> bool:
        """True when a write accepted earlier in this round touches what `sub` read."""
        return any(k in self.overlay for k in sub.reads) or any(t in self.written_types for t in sub.scans)


class CommandWriter:
    def __init__(
        self,
        *,
        store: Store,
        tracker: ChangeTracker,
        txlog: TxLog,
        publisher: Publisher,
        fence: StoreFence,
        max_batch: int = MAX_GROUP_COMMANDS,
        max_batch_bytes: int = 16 * 1024 * 1024,
        read_back_timeout_s: float = 30.0,
        metrics: CommandMetrics | None = None,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else CommandMetrics(CollectorRegistry())
        self._on_fenced = on_fenced
        self._store = store
        self._tracker = tracker
        self._txlog = txlog
        self._publisher = publisher
        self._fence = fence
        self._max_batch = max_batch
        self._max_batch_bytes = max_batch_bytes
        self._read_back_timeout_s = read_back_timeout_s
        self._pending: deque[Submission] = deque()
        self._arrived = asyncio.Event()
        self._current: list[Submission] = []
        self._task: asyncio.Task[None] | None = None
        self._unsettled = False

    # --- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="command-writer")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop writing; whatever was not committed fails as UNAVAILABLE (retry is safe)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        gone = Unavailable("this command_svc stopped writing; retry with the same tx")
        _fail([*self._current, *self._pending], gone)
        self._current = []
        self._pending.clear()

    def submit(self, sub: Submission) -> None:
        if not self.running:
            raise Unavailable("this command_svc is not writing now; retry with the same tx")
        self._pending.append(sub)
        self._arrived.set()

    # --- the loop ----------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            batch = await self._next_batch()
            self._current = batch
            try:
                await self._write(batch)
            except Fenced:
                log.critical("another command_svc took over this transactional id; stopping writes")
                if self._on_fenced is not None:
                    self._on_fenced()
                raise
            except Exception:
                log.exception("command writer round failed")
                _fail(batch, Unavailable("command writer failed; retry with the same tx"))
            self._current = []

    async def _next_batch(self) -> list[Submission]:
        """Everything that arrived since the last round, up to a count and a size."""
        while not self._pending:
            self._arrived.clear()
            await self._arrived.wait()
        batch = [self._pending.popleft()]
        size = batch[0].size_bound
        while (
            self._pending
            and len(batch) < self._max_batch
            and size + self._pending[0].size_bound <= self._max_batch_bytes
        ):
            sub = self._pending.popleft()
            size += sub.size_bound
            batch.append(sub)
        return batch

    async def _write(self, batch: list[Submission]) -> None:
        await self._settle()
        round_ = self._validate(self._triage(batch))
        outcome = await self._commit(round_.accepted)
        self._answer(round_, outcome)
        if isinstance(outcome, Fenced):
            raise outcome

    # --- 1. triage ---------------------------------------------------------
    def _triage(self, batch: list[Submission]) -> list[Submission]:
        candidates = []
        for sub in batch:
            if sub.future.done():
                continue  # its caller gave up (deadline, cancel): write nothing for it
            done = self._txlog.lookup(sub.proposal.tx)
            if done is not None:
                self._metrics.dedupe_from_txlog()
                sub.future.set_result(done)
                continue
            candidates.append(sub)
        return candidates

    # --- 2. validate -------------------------------------------------------
    def _validate(self, candidates: list[Submission]) -> _Round:
        round_ = _Round()
        for sub in candidates:
            if sub.proposal.tx in round_.txs:
                round_.repeats.append(sub)
                continue
            if self._tracker.stale(sub.reads, sub.scans) or round_.invalidates(sub):
                if sub.rerun is None:
                    round_.run_again.append(sub)
                    continue
                self._metrics.rerun_in_writer()
                try:
                    self._rerun(sub, round_.overlay)
                except MykoError as exc:
                    sub.future.set_exception(exc)
                    continue
            round_.accept(sub)
        return round_

    def _rerun(self, sub: Submission, overlay: Mapping[Key, Message | None]) -> None:
        assert sub.rerun is not None
        ctx = sub.rerun(overlay)
        sub.proposal.events = ctx.events()
        sub.writes = ctx.writes
        sub.size_bound = self._publisher.check_size(sub.proposal)

    # --- 3. commit ---------------------------------------------------------
    async def _commit(self, accepted: list[Submission]) -> dict[str, command_pb2.CommandResult] | Exception:
        """Commit and read back; the results by tx, or why the commit failed."""
        if not accepted:
            return {}
        started = time.perf_counter()
        try:
            committed = await self._publisher.commit([s.proposal for s in accepted])
        except Exception as exc:
            # It may still have landed (its answer was lost): read up to the end of
            # the log before validating anything else.
            self._metrics.commit_failed()
            self._unsettled = True
            if not isinstance(exc, MykoError):
                log.exception("commit failed")
            return exc
        for sub, c in zip(accepted, committed, strict=True):
            p = sub.proposal
            self._txlog.remember(p.tx, p.digest, c.result, c.txlog_partition, c.txlog_offset)
        await self._read_back(c.result for c in committed)
        self._metrics.batch(len(accepted))
        self._metrics.commit_seconds(time.perf_counter() - started)
        for sub in accepted:
            self._metrics.committed(sub.proposal.command_type)
        return {sub.proposal.tx: c.result for sub, c in zip(accepted, committed, strict=True)}

    async def _read_back(self, results: Iterable[command_pb2.CommandResult]) -> None:
        needed: dict[tuple[str, int], int] = {}
        for r in results:
            for o in r.visible_at.positions:
                tp = (o.topic, o.partition)
                needed[tp] = max(needed.get(tp, 0), o.offset)
        # Until the store shows these writes no handler may validate against it,
        # or a lost update could slip through: keep the writer waiting.
        while True:
            try:
                await self._store.wait_for(needed, timeout_s=self._read_back_timeout_s)
                return
            except MykoError:
                log.warning("writes not read back within %ss; still waiting", self._read_back_timeout_s)

    async def _settle(self) -> None:
        """After a failed commit, wait until the store and tx log read whatever did land."""
        backoff = Backoff(initial_s=0.1, max_s=2.0)
        while self._unsettled:
            try:
                await self._fence.sync()
                self._unsettled = False
            except MykoError as exc:
                log.warning("cannot settle after a failed commit yet: %s", exc)
                await asyncio.sleep(backoff.next())

    # --- 4. answer ---------------------------------------------------------
    def _answer(self, round_: _Round, outcome: dict[str, command_pb2.CommandResult] | Exception) -> None:
        for sub in round_.accepted:
            if isinstance(outcome, Exception):
                _settle_future(sub.future, outcome)
            else:
                # A caller that gave up during the commit finds its result in the tx log.
                _settle_future(sub.future, outcome[sub.proposal.tx])
        for sub in round_.repeats:
            done = self._txlog.lookup(sub.proposal.tx)
            _settle_future(sub.future, done or Unavailable("commit failed; retry with the same tx"))
        for sub in round_.run_again:
            _settle_future(sub.future, None)


def _settle_future(fut: asyncio.Future[Outcome], outcome: Outcome | Exception) -> None:
    if fut.done():
        return
    if isinstance(outcome, Exception):
        fut.set_exception(outcome)
        fut.exception()  # retrieved: its caller may be gone
    else:
        fut.set_result(outcome)


def _fail(subs: Iterable[Submission], exc: Exception) -> None:
    for sub in subs:
        _settle_future(sub.future, exc)
