"""The command bus: check the request, deduplicate by tx, run the handler, submit its proposal.

This is the caller's side of a command: each Execute runs its handler in its
own task, concurrently with the others, then submits the proposal to the one
CommandWriter (command_writer.py), which validates and commits in arrival order
and answers with the result, "run again" (reads went stale) or "already done".
A tx takes effect once: a tx the tx log knows is answered from it, and a tx
being run now is joined rather than run twice (docs/consistency.md).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping

from google.protobuf.message import DecodeError, Message
from opentelemetry import context as otel_context
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from myko import input_rules
from myko.app import App
from myko.command_context import CommandContext
from myko.command_result import is_logged_form
from myko.command_writer import MAX_GROUP_COMMANDS, CommandWriter, Submission
from myko.conflicts import ChangeTracker, Key
from myko.entities import TYPE_URL_PREFIX
from myko.errors import Conflict, InternalError, InvalidArgument, LimitExceeded, MykoError, UnknownType, echo
from myko.metrics.command import CommandMetrics
from myko.ports import Proposal, Publisher
from myko.principal import ANONYMOUS, Principal
from myko.repo import Store
from myko.store_fence import StoreFence
from myko.tracing import SPAN_COMMIT, SPAN_HANDLE, Tracing
from myko.txlog import TxEntry, TxLog, command_digest
from myko.v1 import command_pb2
from myko.watermark import Watermark

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


class CommandBus:
    def __init__(
        self,
        *,
        app: App,
        store: Store,
        tracker: ChangeTracker,
        txlog: TxLog,
        publisher: Publisher,
        fence: StoreFence,
        source: str,
        max_command_bytes: int,
        conflict_retries: int,
        max_batch: int = MAX_GROUP_COMMANDS,
        read_back_timeout_s: float = 30.0,
        metrics: CommandMetrics | None = None,
        tracing: Tracing | None = None,
        on_fenced: Callable[[], None] | None = None,
    ) -> None:
        """`on_fenced` is called when the writer stops because another producer took
        its transactional id (command_service.py takes it back while it leads)."""
        self._app = app
        self._tracing = tracing or Tracing.off()
        self._store = store
        self._tracker = tracker
        self._txlog = txlog
        self._publisher = publisher
        self._source = source
        self._fence = fence
        # The reads to the end that replays from the tx log share (_synced).
        self._sync: asyncio.Future[None] | None = None
        self._next_sync: asyncio.Future[None] | None = None
        self._max_command_bytes = max_command_bytes
        self._conflict_retries = conflict_retries
        self._read_back_timeout_s = read_back_timeout_s
        # Hooks only: where the numbers go is the caller's business (myko/metrics/).
        self._metrics = metrics if metrics is not None else CommandMetrics(CollectorRegistry())
        self._writer = CommandWriter(
            store=store,
            tracker=tracker,
            txlog=txlog,
            publisher=publisher,
            fence=fence,
            max_batch=max_batch,
            read_back_timeout_s=read_back_timeout_s,
            metrics=self._metrics,
            on_fenced=on_fenced,
        )
        # tx -> (digest, its first caller's outcome) while that caller runs it.
        self._inflight: dict[str, tuple[bytes, asyncio.Future[command_pb2.CommandResult]]] = {}

    def start(self) -> None:
        self._writer.start()

    @property
    def running(self) -> bool:
        return self._writer.running

    async def stop(self) -> None:
        """Stop writing; whatever was not committed fails as UNAVAILABLE (retry is safe)."""
        await self._writer.stop()

    async def execute(
        self, request: command_pb2.CommandRequest, principal: Principal = ANONYMOUS
    ) -> command_pb2.CommandResult:
        tx = parse_tx(request.tx)
        name = type_name_of(request.command.type_url, "command")
        current = trace.get_current_span()
        if current.is_recording():
            current.set_attributes({"myko.tx": tx, "myko.command.type": name})
        reg = self._app.commands.get(name)
        if reg is None:
            raise UnknownType("command", name)
        # Before anything else, a replayed result included: it carries the events.
        reg.allow.check(principal, f"command {name}")
        size = len(request.command.value)
        if size > self._max_command_bytes:
            raise LimitExceeded(
                "MYKO_MAX_COMMAND_BYTES",
                f"command: {size} bytes, over the MYKO_MAX_COMMAND_BYTES limit of {self._max_command_bytes}",
            )
        try:
            command = reg.message.FromString(request.command.value)
        except DecodeError as exc:
            raise InvalidArgument("command", f"cannot decode as {name}: {exc}") from None
        digest = command_digest(TYPE_URL_PREFIX + name, request.command.value)

        while True:
            done = self._txlog.lookup(tx)
            if done is not None:
                self._metrics.dedupe_from_txlog()
                return await self._replay(digest, done)
            running = self._inflight.get(tx)
            if running is None:
                break
            self._metrics.dedupe_inflight()
            _same_command(tx, digest, running[0])
            try:
                return await asyncio.shield(running[1])
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if running[1].cancelled() and not (task is not None and task.cancelling()):
                    continue  # the first caller gave up, not us: look again
                raise

        fut: asyncio.Future[command_pb2.CommandResult] = asyncio.get_running_loop().create_future()
        self._inflight[tx] = (digest, fut)
        try:
            result = await self._run(tx, digest, name, reg.handler, command, principal)
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

    async def _replay(self, digest: bytes, done: TxEntry) -> command_pb2.CommandResult:
        """The stored answer of a tx that already took effect, if it is the same command."""
        _same_command(done.tx, digest, done.digest)
        result = await self._txlog.result(done)
        if is_logged_form(result):
            return await self._visible(result)
        # The tx log may know a tx before the store has read its events back: answer
        # only once it has, so the caller's next command sees this one's writes.
        needed = {(o.topic, o.partition): o.offset for o in result.visible_at.positions}
        await self._store.wait_for(needed, timeout_s=self._read_back_timeout_s)
        return result

    async def _visible(self, result: command_pb2.CommandResult) -> command_pb2.CommandResult:
        """A result read back from the tx log has no offsets (its record was written with
        its events, before they were known): give it a visible_at at or past them.

        The tx log shows only committed transactions, so this tx's events lie before
        the end of their partitions now; once the store has read to those ends, its
        position on every partition of the topics written is such a bound
        (docs/consistency.md, "What a retry returns")."""
        await self._synced()
        topics = {self._publisher.topic_of(ev.type) for ev in result.events}
        at = self._store.watermark.positions
        result.visible_at.CopyFrom(
            Watermark({tp: pos for tp, pos in at.items() if tp[0] in topics}).to_proto()
        )
        return result

    async def _synced(self) -> None:
        """Read to the end of every partition, once the tx being replayed is known committed.

        A read begun now will do; so will one begun later, while this one waits:
        replays arriving while a read runs share the next one (a batch retried after
        a failover would otherwise ask for the end offsets once per command).
        """
        running = self._sync
        if running is None or running.done():
            self._sync = asyncio.ensure_future(self._fence.sync())
            await asyncio.shield(self._sync)
            return
        if self._next_sync is None:
            self._next_sync = asyncio.ensure_future(self._sync_after(running))
        await asyncio.shield(self._next_sync)

    async def _sync_after(self, running: asyncio.Future[None]) -> None:
        await asyncio.wait([running])
        self._next_sync = None
        self._sync = asyncio.ensure_future(self._fence.sync())
        await self._sync

    async def _run(
        self, tx: str, digest: bytes, name: str, handler: object, command: Message, principal: Principal
    ) -> command_pb2.CommandResult:
        """Run the handler and submit its proposal until it commits (or conflicts too often)."""

        def rerun(overlay: Mapping[Key, Message | None]) -> CommandContext:
            ctx = self._context(tx, overlay, principal)
            _call(handler, command, ctx, name, tx)
            return ctx

        tracing = self._tracing
        sync = not inspect.iscoroutinefunction(handler)
        for attempt in range(self._conflict_retries + 1):
            if attempt:
                self._metrics.rerun_by_caller()
            token = self._tracker.open()
            try:
                ctx = self._context(tx, {}, principal)
                with tracing.span(
                    SPAN_HANDLE, attributes={"myko.command.type": name, "myko.attempt": attempt + 1}
                ):
                    await _run_handler(handler, command, ctx, name, tx)
                # Queued, validated with the batch, committed, read back: the span the Kafka write hangs under.
                with tracing.span(SPAN_COMMIT, attributes={"myko.events": len(ctx.writes)}) as span:
                    proposal = Proposal(
                        tx=tx,
                        digest=digest,
                        command_type=name,
                        events=ctx.events(),
                        trace=otel_context.get_current() if tracing.enabled else None,
                    )
                    sub = Submission(
                        proposal,
                        reads=ctx.reads,
                        scans=ctx.scans,
                        writes=ctx.writes,
                        rerun=rerun if sync else None,
                        size_bound=self._publisher.check_size(proposal),
                    )
                    self._writer.submit(sub)
                    outcome = await sub.future
                    if outcome is None:
                        span.set_attribute("myko.stale", True)  # its reads went stale: run again
            finally:
                self._tracker.close(token)
            if isinstance(outcome, TxEntry):
                return await self._replay(digest, outcome)
            if outcome is not None:
                return outcome
        self._metrics.conflict()
        raise Conflict(f"tx {tx}: state kept changing under the handler; retrying is safe")

    def _context(
        self, tx: str, overlay: Mapping[Key, Message | None], principal: Principal
    ) -> CommandContext:
        return CommandContext(
            tx=tx,
            store=self._store,
            tracker=self._tracker,
            source=self._source,
            overlay=overlay,
            max_result_bytes=self._publisher.max_result_bytes,
            principal=principal,
        )


def _same_command(tx: str, digest: bytes, seen_digest: bytes) -> None:
    if seen_digest != digest:
        raise InvalidArgument("tx", f"{tx} was already used for a different command")


async def _run_handler(handler: object, command: Message, ctx: CommandContext, name: str, tx: str) -> None:
    out = _call(handler, command, ctx, name, tx)
    if inspect.isawaitable(out):
        try:
            await out
        except MykoError:
            raise
        except Exception as exc:
            raise _handler_failed(name, tx, exc) from exc


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
