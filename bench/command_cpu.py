"""CPU per command of the command core, in-process: no gRPC, no Kafka (issue 11, target 2).

    MYKO_APP=targets python -m bench.command_cpu --clients 64 --commands 10000 [--tracing]
    MYKO_APP=targets python -m bench.command_cpu --clients 4 --batch 500 --commands 10000 [--tracing]

The example app's `RecordHits` through `CommandBus.execute` over the in-memory
adapters (MemoryCore): `--clients` callers with one command in flight each, on
their own Targets; or, with `--batch`, that many senders of `CommandBatches`
calls spread over 16 Targets each, as the bench's ExecuteBatch phase does.
`--tracing` builds the bus's tracing as a service does by default
(`TracingSettings()`: parent-based ratio sampling, no exporter) and opens a
server span around each call, as the gRPC interceptor does. Prints
`time.process_time()` per command for each run after a warm-up run: steadier
than a service's CPU on a shared machine, and comparable between two trees
run alternately (`PYTHONPATH=<tree>`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
from collections.abc import Callable

from opentelemetry.trace import SpanKind
from targets.v1 import commands_pb2

from myko.app import load_app
from myko.command_batch import BatchLimits, CommandBatches
from myko.command_bus import CommandBus
from myko.memory_core import MemoryCore, request
from myko.principal import ANONYMOUS
from myko.settings import TracingSettings
from myko.trace_export import build_tracing
from myko.v1 import command_pb2

TARGETS_PER_SENDER = 16


async def _measure(args: argparse.Namespace) -> None:
    clients, commands, batch = int(args.clients), int(args.commands), int(args.batch)
    core = MemoryCore(load_app("targets"))
    server_span: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext
    if args.tracing:
        tracing = build_tracing(TracingSettings(), service="command_svc")
        # The bus as command_svc builds it, with the service's tracing.
        core.bus = CommandBus(
            app=core.app,
            store=core.store,
            tracker=core.tracker,
            txlog=core.txlog,
            publisher=core.publisher,
            fence=core.fence,
            source="bench",
            max_command_bytes=512 * 1024,
            conflict_retries=8,
            tracing=tracing,
        )

        def server_span() -> contextlib.AbstractContextManager[object]:
            return tracing.tracer.start_as_current_span(
                "myko.v1.CommandBus/Execute", kind=SpanKind.SERVER, record_exception=False
            )

    async with core:
        per_target = TARGETS_PER_SENDER if batch else 1
        ids = [f"t{i}" for i in range(clients * per_target)]
        await core.bus.execute(
            request(commands_pb2.ImportTargets(targets=[commands_pb2.SetTarget(id=i, name=i) for i in ids]))
        )
        batches = CommandBatches(
            core.bus,
            BatchLimits(max_commands=batch or 1, max_in_flight=1 << 20, max_result_bytes=1 << 30),
        )

        async def caller(k: int, n: int) -> None:
            for _ in range(n):
                with server_span():
                    await core.bus.execute(request(commands_pb2.RecordHits(id=ids[k], count=1)), ANONYMOUS)

        async def sender(k: int, n: int) -> None:
            for _ in range(n):
                mine = ids[k * per_target : (k + 1) * per_target]
                req = command_pb2.CommandBatchRequest(
                    commands=[
                        request(commands_pb2.RecordHits(id=mine[j % per_target], count=1))
                        for j in range(batch)
                    ]
                )
                with server_span():
                    res = await batches.execute(req, ANONYMOUS)
                failed = [o.error.message for o in res.outcomes if o.HasField("error")]
                assert not failed, failed[0]

        async def run() -> int:
            if batch:
                n = max(1, commands // (batch * clients))
                await asyncio.gather(*(sender(k, n) for k in range(clients)))
                return n * batch * clients
            n = max(1, commands // clients)
            await asyncio.gather(*(caller(k, n) for k in range(clients)))
            return n * clients

        await run()  # warm-up
        for _ in range(args.runs):
            gc.collect()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            n = await run()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            print(
                f"{n} commands: {1e6 * cpu / n:.0f} us CPU per command, {n / wall:.0f} per second", flush=True
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=64, help="callers (or batch senders) at once")
    parser.add_argument("--commands", type=int, default=10_000, help="commands per run")
    parser.add_argument("--batch", type=int, default=0, help="commands per ExecuteBatch (0: single Execute)")
    parser.add_argument("--tracing", action="store_true", help="tracing as a service has it by default")
    parser.add_argument("--runs", type=int, default=3, help="measured runs after the warm-up")
    asyncio.run(_measure(parser.parse_args()))


if __name__ == "__main__":
    main()
