"""ExecuteBatch: many independent commands in one call, each answered as Execute would answer it.

Each command goes through `CommandBus.execute` on its own: its own tx (once-only,
a retried batch answers every command it already ran with its first result),
its own policy check, its own outcome. What the batch saves is the per-call cost
(one gRPC call, one task switch into the server, one token check), and the
commands of a batch arrive at the command writer together, so they share its
Kafka transactions (group commit). docs/batches.md says why a unary batch
rather than a stream, and what the bounds are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from myko.command_bus import CommandBus
from myko.errors import ConfigError, LimitExceeded, MykoError, ResourceExhausted
from myko.logs import tx_context
from myko.principal import Principal
from myko.status import command_error
from myko.v1 import command_pb2

WHERE = "myko.v1.CommandBus/ExecuteBatch"


@dataclass(frozen=True)
class BatchLimits:
    max_commands: int  # per call (MYKO_MAX_BATCH_COMMANDS)
    max_in_flight: int  # across every call now running (MYKO_MAX_BATCH_IN_FLIGHT)
    max_result_bytes: int  # of results in one answer (MYKO_MAX_BATCH_RESULT_BYTES)

    def __post_init__(self) -> None:
        if self.max_in_flight < self.max_commands:
            raise ConfigError(
                f"MYKO_MAX_BATCH_IN_FLIGHT ({self.max_in_flight}) must be at least "
                f"MYKO_MAX_BATCH_COMMANDS ({self.max_commands}), or a full batch could never run"
            )


OnFailed = Callable[[command_pb2.CommandRequest, MykoError], None]


class CommandBatches:
    def __init__(self, bus: CommandBus, limits: BatchLimits, *, on_failed: OnFailed | None = None) -> None:
        self._bus = bus
        self._limits = limits
        self._on_failed = on_failed
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def execute(
        self, request: command_pb2.CommandBatchRequest, principal: Principal
    ) -> command_pb2.CommandBatchResult:
        n = len(request.commands)
        limits = self._limits
        if n > limits.max_commands:
            raise LimitExceeded(
                "MYKO_MAX_BATCH_COMMANDS",
                f"commands: {n} in one batch, over the MYKO_MAX_BATCH_COMMANDS limit of "
                f"{limits.max_commands}; split it (nothing was run)",
            )
        if self._in_flight + n > limits.max_in_flight:
            # Retriable (no myko-limit trailer): the same batch fits once others finish.
            raise ResourceExhausted(
                f"{self._in_flight} batched commands are running, and {n} more would pass "
                f"MYKO_MAX_BATCH_IN_FLIGHT ({limits.max_in_flight}); nothing was run, retry later"
            )
        self._in_flight += n
        try:
            outcomes = await asyncio.gather(*(self._one(r, principal) for r in request.commands))
        finally:
            self._in_flight -= n
        return command_pb2.CommandBatchResult(outcomes=self._fit(outcomes))

    async def _one(
        self, request: command_pb2.CommandRequest, principal: Principal
    ) -> command_pb2.CommandOutcome:
        with tx_context(request.tx[:64]):
            try:
                return command_pb2.CommandOutcome(result=await self._bus.execute(request, principal))
            except Exception as exc:  # every failure is this command's own outcome
                if isinstance(exc, MykoError) and self._on_failed is not None:
                    self._on_failed(request, exc)
                return command_pb2.CommandOutcome(error=command_error(exc, WHERE))

    def _fit(self, outcomes: list[command_pb2.CommandOutcome]) -> list[command_pb2.CommandOutcome]:
        """Bound the answer: a result past MYKO_MAX_BATCH_RESULT_BYTES is replaced by an error
        saying it took effect; Execute (or a batch) with the same tx returns it."""
        budget = self._limits.max_result_bytes
        for i, outcome in enumerate(outcomes):
            budget -= outcome.ByteSize()
            if budget < 0 and outcome.HasField("result"):
                tx = outcome.result.tx
                outcomes[i] = command_pb2.CommandOutcome(
                    error=command_pb2.CommandError(
                        code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                        message=(
                            f"tx {tx} took effect, but its result did not fit in this answer "
                            f"(MYKO_MAX_BATCH_RESULT_BYTES {self._limits.max_result_bytes}); "
                            "send the same tx again to get it"
                        ),
                    )
                )
                budget += outcome.ByteSize() - outcomes[i].ByteSize()
        return outcomes
