"""The command bus: validate, deduplicate by tx, run the handler, commit atomically.

Handlers run concurrently; one writer task validates their proposals against
the current state in arrival order and commits every valid one in a single
Kafka transaction (group commit). A proposal whose reads went stale is run
again: a plain (sync) handler right inside the writer, against the state plus
the writes accepted earlier in the batch, so contention on one entity costs no
extra round trips; an async handler by its caller on fresh state (see
conflicts.py). The writer waits until its own reader has read the transaction
back before answering, so the next handler always sees every acknowledged write.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError, Message

from myko import input_rules
from myko.app import App
from myko.command_context import CommandContext
from myko.conflicts import ChangeTracker, Key
from myko.entities import TYPE_URL_PREFIX
from myko.errors import Conflict, InternalError, InvalidArgument, MykoError, Unavailable, UnknownType, echo
from myko.publisher import FencedError, Proposal, TransactionalPublisher
from myko.repo import Store
from myko.retry import Backoff
from myko.store_fence import StoreFence
from myko.txlog import TxLog, command_digest
from myko.v1 import command_pb2

log = logging.getLogger(__name__)


def parse_tx(raw: str) -> str:
    """The canonical lower-case form of a UUID, or INVALID_ARGUMENT naming `tx` (input_rules.tx)."""
    return input_rules.tx(raw)


def type_name_of(type_url: str, field_name: str) -> str:
    if not type_url:
        raise InvalidArgument(field_name, "is required (a google.protobuf.Any)")
    if "/" not in type_url:
        raise InvalidArgument(field_name, f"type_url {echo(type_url)} has no '/'")
    return type_url.rsplit("/", 1)[1]


Rerun = Callable[[Mapping[Key, Message | None]], CommandContext]


@dataclass
class _Submission:
    proposal: Proposal
    reads: dict[Key, int]
    scans: dict[str, int]
    writes: Mapping[Key, Message | None]
    # Runs a sync handler again over store + overlay; None for async handlers.
    rerun: Rerun | None
    future: asyncio.Future[command_pb2.CommandResult | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CommandBus:
    def __init__(
        self,
        *,
        app: App,
        store: Store,
        tracker: ChangeTracker,
        txlog: TxLog,
        publisher: TransactionalPublisher,
        source: str,
        max_command_bytes: int,
        conflict_retries: int,
        fence: StoreFence,
        max_batch: int = 512,
        read_back_timeout_s: float = 30.0,
    ) -> None:
        self._app = app
        self._store = store
        self._tracker = tracker
        self._txlog = txlog
        self._publisher = publisher
        self._source = source
        self._max_command_bytes = max_command_bytes
        self._conflict_retries = conflict_retries
        self._max_batch = max_batch
        self._read_back_timeout_s = read_back_timeout_s
        self._queue: asyncio.Queue[_Submission] = asyncio.Queue()
        self._inflight: dict[str, tuple[bytes, asyncio.Future[command_pb2.CommandResult]]] = {}
        self._writer: asyncio.Task[None] | None = None
        self._current: list[_Submission] = []
        self._fence = fence
        self._unsettled = False

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="command-writer")

    @property
    def running(self) -> bool:
        return self._writer is not None and not self._writer.done()

    async def stop(self) -> None:
        """Stop writing; whatever was not committed fails as UNAVAILABLE (retry is safe)."""
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        gone = Unavailable("this command_svc stopped writing; retry with the same tx")
        for sub in self._current:
            if not sub.future.done():
                sub.future.set_exception(gone)
        self._current = []
        while not self._queue.empty():
            sub = self._queue.get_nowait()
            if not sub.future.done():
                sub.future.set_exception(gone)

    async def execute(self, request: command_pb2.CommandRequest) -> command_pb2.CommandResult:
        tx = parse_tx(request.tx)
        name = type_name_of(request.command.type_url, "command")
        reg = self._app.commands.get(name)
        if reg is None:
            raise UnknownType("command", name)
        size = len(request.command.value)
        if size > self._max_command_bytes:
            raise InvalidArgument("command", f"{size} bytes exceeds the {self._max_command_bytes}-byte limit")
        try:
            command = reg.message.FromString(request.command.value)
        except DecodeError as exc:
            raise InvalidArgument("command", f"cannot decode as {name}: {exc}") from None
        digest = command_digest(TYPE_URL_PREFIX + name, request.command.value)

        while True:
            done = self._txlog.get(tx)
            if done is not None:
                return self._replay(tx, digest, *done)
            running = self._inflight.get(tx)
            if running is None:
                break
            try:
                return self._replay(tx, digest, running[0], await asyncio.shield(running[1]))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if running[1].cancelled() and not (task is not None and task.cancelling()):
                    continue  # the first caller gave up, not us: look again
                raise

        fut: asyncio.Future[command_pb2.CommandResult] = asyncio.get_running_loop().create_future()
        self._inflight[tx] = (digest, fut)
        try:
            result = await self._run(tx, digest, name, reg.handler, command)
            fut.set_result(result)
            return result
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: a duplicate caller may never come
            raise
        finally:
            del self._inflight[tx]

    @staticmethod
    def _replay(
        tx: str, digest: bytes, seen_digest: bytes, result: command_pb2.CommandResult
    ) -> command_pb2.CommandResult:
        if seen_digest != digest:
            raise InvalidArgument("tx", f"{tx} was already used for a different command")
        return result

    async def _run(
        self, tx: str, digest: bytes, name: str, handler: object, command: Message
    ) -> command_pb2.CommandResult:
        is_async = inspect.iscoroutinefunction(handler)

        def rerun(overlay: Mapping[Key, Message | None]) -> CommandContext:
            ctx = self._context(tx, overlay)
            _call(handler, command, ctx, name, tx)
            return ctx

        for _attempt in range(self._conflict_retries + 1):
            token = self._tracker.open()
            try:
                ctx = self._context(tx, {})
                out = _call(handler, command, ctx, name, tx)
                if inspect.isawaitable(out):
                    try:
                        await out
                    except MykoError:
                        raise
                    except Exception as exc:
                        raise _handler_failed(name, tx, exc) from exc
                sub = _Submission(
                    Proposal(tx=tx, digest=digest, command_type=name, events=ctx.events()),
                    reads=ctx.reads,
                    scans=ctx.scans,
                    writes=ctx.writes,
                    rerun=None if is_async else rerun,
                )
                if not self.running:
                    raise Unavailable("this command_svc is not writing now; retry with the same tx")
                await self._queue.put(sub)
                result = await sub.future
            finally:
                self._tracker.close(token)
            if result is not None:
                return result
        raise Conflict(f"tx {tx}: state kept changing under the handler; retrying is safe")

    def _context(self, tx: str, overlay: Mapping[Key, Message | None]) -> CommandContext:
        return CommandContext(
            tx=tx, store=self._store, tracker=self._tracker, source=self._source, overlay=overlay
        )

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._current = batch
            try:
                await self._write(batch)
            except FencedError:
                log.critical("another command_svc took over this transactional id; stopping writes")
                raise
            except Exception:
                log.exception("command writer batch failed")
                for sub in batch:
                    if not sub.future.done():
                        sub.future.set_exception(Unavailable("command writer failed; retry with the same tx"))

    async def _settle(self) -> None:
        """After a failed commit, wait until the store has read whatever did land."""
        backoff = Backoff(initial_s=0.1, max_s=2.0)
        while self._unsettled:
            try:
                await self._fence.sync()
                self._unsettled = False
            except MykoError as exc:
                log.warning("cannot settle after a failed commit yet: %s", exc)
                await asyncio.sleep(backoff.next())

    async def _write(self, batch: list[_Submission]) -> None:
        await self._settle()
        accepted: list[_Submission] = []
        stale: list[_Submission] = []
        overlay: dict[Key, Message | None] = {}
        written_types: set[str] = set()
        again: list[_Submission] = []  # a tx already accepted earlier in this batch
        batch_txs: set[str] = set()
        for sub in batch:
            if sub.future.done():
                # Its caller gave up (deadline, cancel), which cancelled the future:
                # write nothing for it; a retry with the same tx runs it again.
                continue
            # The last word on once-only: a retry whose first caller gave up
            # mid-commit can get past execute()'s checks, but not past this one.
            done = self._txlog.get(sub.proposal.tx)
            if done is not None:
                _answer(sub, done[0], done[1])
                continue
            if sub.proposal.tx in batch_txs:
                again.append(sub)
                continue
            if (
                self._tracker.stale(sub.reads, sub.scans)
                or any(k in overlay for k in sub.reads)
                or any(t in written_types for t in sub.scans)
            ):
                if sub.rerun is None:
                    stale.append(sub)
                    continue
                try:
                    ctx = sub.rerun(overlay)
                except MykoError as exc:
                    sub.future.set_exception(exc)
                    continue
                sub.proposal.events = ctx.events()
                sub.writes = ctx.writes
            accepted.append(sub)
            batch_txs.add(sub.proposal.tx)
            overlay.update(sub.writes)
            written_types |= {t for t, _ in sub.writes}
        try:
            if accepted:
                results = await self._publisher.commit([s.proposal for s in accepted])
                for sub, result in zip(accepted, results, strict=True):
                    self._txlog.remember(sub.proposal.tx, sub.proposal.digest, result)
                await self._read_back(results)
                for sub, result in zip(accepted, results, strict=True):
                    # A caller that gave up during the commit finds its result in the tx log.
                    if not sub.future.done():
                        sub.future.set_result(result)
        except MykoError as exc:
            # A commit that failed may still have landed (its answer was lost):
            # read up to the end of the log before validating anything else.
            self._unsettled = True
            for sub in accepted:
                if not sub.future.done():
                    sub.future.set_exception(exc)
                    sub.future.exception()
        except Exception as exc:
            self._unsettled = True
            log.exception("command writer failed")
            for sub in accepted:
                if not sub.future.done():
                    sub.future.set_exception(exc)
                    sub.future.exception()
            if isinstance(exc, FencedError):
                raise
        for sub in stale:
            if not sub.future.done():
                sub.future.set_result(None)
        for sub in again:
            done = self._txlog.get(sub.proposal.tx)
            if done is not None:
                _answer(sub, done[0], done[1])
            elif not sub.future.done():
                sub.future.set_exception(Unavailable("commit failed; retry with the same tx"))

    async def _read_back(self, results: list[command_pb2.CommandResult]) -> None:
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


def _call(handler: object, command: Message, ctx: CommandContext, name: str, tx: str) -> object:
    try:
        return handler(command, ctx)  # type: ignore[operator]
    except MykoError:
        raise
    except Exception as exc:
        raise _handler_failed(name, tx, exc) from exc


def _handler_failed(name: str, tx: str, exc: Exception) -> InternalError:
    """A handler's own exception: logged with a reference; the caller gets INTERNAL and the reference."""
    internal = InternalError()
    log.error("command handler for %s failed (tx %s, ref %s)", name, tx, internal.ref, exc_info=exc)
    return internal


def _answer(sub: _Submission, digest: bytes, result: command_pb2.CommandResult) -> None:
    """Answer a submission whose tx already took effect."""
    if sub.future.done():
        return
    if digest != sub.proposal.digest:
        sub.future.set_exception(
            InvalidArgument("tx", f"{sub.proposal.tx} was already used for a different command")
        )
    else:
        sub.future.set_result(result)
