"""`python -m bench.otlp_sink PORT [DUMP]`: an OTLP/gRPC trace receiver that counts spans.

It stands in for an OpenTelemetry Collector while the bench measures
tracing's overhead: the services really serialise and send every span over
gRPC, as they would to a collector, and nothing is stored. It prints `ready`
once listening and, when stopped with SIGTERM or SIGINT, the number of spans
received (the bench checks that the traced stack really exported).

With DUMP it also appends every export request to that file, one
length-prefixed ExportTraceServiceRequest after another, for `python -m
bench.span_tree DUMP` to print (how docs/observability.md's browser trace was
taken from a real stack).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


async def serve(port: int, dump: Path | None = None) -> int:
    received = 0

    async def export(request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
        nonlocal received
        received += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        if dump is not None:
            data = request.SerializeToString()
            with dump.open("ab") as f:
                f.write(len(data).to_bytes(4, "big") + data)
        return ExportTraceServiceResponse()

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Export": grpc.unary_unary_rpc_method_handler(
                        export,
                        request_deserializer=ExportTraceServiceRequest.FromString,
                        response_serializer=ExportTraceServiceResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise OSError(f"cannot listen on 127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop(1.0)
    return received


def main() -> None:
    port = int(sys.argv[1])
    dump = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    print(asyncio.run(serve(port, dump)), flush=True)


if __name__ == "__main__":
    main()
