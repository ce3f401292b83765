"""command_svc: group commits, reruns, deduplicated retries, conflicts, the tx-log window.

CommandBus calls these hooks at the points its docstring describes; the hooks
do nothing but update pre-bound series, so the bus does not depend on how
they are exported.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from myko.metrics.buckets import BATCH, LATENCY_S


class CommandMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._batch = Histogram(
            "myko_command_batch_size",
            "Commands committed together in one Kafka transaction (group commit)",
            buckets=BATCH,
            registry=registry,
        )
        self._commit = Histogram(
            "myko_command_commit_seconds",
            "One group commit: the Kafka transaction and reading it back into the store",
            buckets=LATENCY_S,
            registry=registry,
        )
        self._committed = Counter(
            "myko_command_committed_total",
            "Commands that took effect, by command type",
            ["command"],
            registry=registry,
        )
        reruns = Counter(
            "myko_command_stale_reruns_total",
            "Handler runs repeated because what they read changed first: in the writer "
            "(plain handlers) or by the caller (async handlers)",
            ["where"],
            registry=registry,
        )
        self._rerun_writer = reruns.labels("writer")
        self._rerun_caller = reruns.labels("caller")
        dedupe = Counter(
            "myko_command_dedupe_hits_total",
            "Commands answered from an earlier run of the same tx instead of running again: "
            "found in the tx log, or joined while still running",
            ["found"],
            registry=registry,
        )
        self._dedupe_txlog = dedupe.labels("txlog")
        self._dedupe_inflight = dedupe.labels("inflight")
        self._conflicts = Counter(
            "myko_command_conflicts_total",
            "Commands refused with ABORTED: state kept changing under the handler",
            registry=registry,
        )
        self._failures = Counter(
            "myko_command_commit_failures_total",
            "Group commits that failed (their commands got an error to retry with the same tx)",
            registry=registry,
        )
        self._txlog = Gauge(
            "myko_command_txlog_entries",
            "Transactions the tx log remembers for exactly-once retries (its window)",
            registry=registry,
        )
        self._leader = Gauge(
            "myko_command_leader",
            "1 while this replica leads (validates and writes), 0 while it forwards",
            registry=registry,
        )
        self._by_type: dict[str, Counter] = {}

    def batch(self, size: int) -> None:
        self._batch.observe(size)

    def commit_seconds(self, seconds: float) -> None:
        self._commit.observe(seconds)

    def committed(self, command_type: str) -> None:
        # Only registered command types reach a commit: the label set is the app's.
        child = self._by_type.get(command_type)
        if child is None:
            child = self._by_type[command_type] = self._committed.labels(command_type)
        child.inc()

    def rerun_in_writer(self) -> None:
        self._rerun_writer.inc()

    def rerun_by_caller(self) -> None:
        self._rerun_caller.inc()

    def dedupe_from_txlog(self) -> None:
        self._dedupe_txlog.inc()

    def dedupe_inflight(self) -> None:
        self._dedupe_inflight.inc()

    def conflict(self) -> None:
        self._conflicts.inc()

    def commit_failed(self) -> None:
        self._failures.inc()

    def watch(self, *, txlog_entries: Callable[[], int], leading: Callable[[], bool]) -> None:
        """Read these when scraped (on the event loop: see MetricsServer)."""
        self._txlog.set_function(lambda: float(txlog_entries()))
        self._leader.set_function(lambda: 1.0 if leading() else 0.0)
