"""The raw gRPC floor of a new subscriber's snapshot: one large message, server-streamed.

    python -m bench.transfer_floor --bytes 23000000 --count 10

A bare grpc.aio server in its own process (as query_svc is) answers a
server-streaming call with one message of pre-built bytes (no serializer, no
Myko code), and a bare grpc.aio client with the bench's channel options times
the call from its start until that message's bytes are in hand (no
deserializer), as bench/scale.py times a new AllTargets subscriber. What is
left of a Myko figure above this one is Myko's own; this is what gRPC itself
costs on the machine, measured in the same run. The same server answers a
unary call with the same bytes (`time_unary_floor`): the floor of a small Get
(an empty filtered result) as bench/scale.py times one; bench/throughput.py
drives that call from many clients at once, the floor of single Execute
throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.client import CHANNEL_OPTIONS
from bench.samples import Samples
from myko.server import TRANSFER_OPTIONS

_SERVICE = "bench.TransferFloor"
_METHOD = f"/{_SERVICE}/Watch"
_UNARY = f"/{_SERVICE}/Get"


def _handler(payload: bytes) -> grpc.GenericRpcHandler[Any, Any]:
    async def watch(_request: bytes, _context: Any) -> AsyncIterator[bytes]:
        yield payload
        # A Watch stays open after its first emission; the client cancels it.
        await asyncio.Event().wait()

    async def get(_request: bytes, _context: Any) -> bytes:
        return payload

    return grpc.method_handlers_generic_handler(
        _SERVICE,
        {  # no (de)serializers: bytes as they are
            "Watch": grpc.unary_stream_rpc_method_handler(watch),
            "Get": grpc.unary_unary_rpc_method_handler(get),
        },
    )


async def _serve(size: int) -> None:
    server = grpc.aio.server(options=[*TRANSFER_OPTIONS, ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((_handler(os.urandom(size)),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    # Until the parent closes our stdin.
    await asyncio.to_thread(sys.stdin.read)
    await server.stop(None)


class FloorServer:
    """The bare server in a child process, serving `size` random bytes per call."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.transfer_floor", "--serve", "--bytes", str(size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,  # where `bench` is a package
            env={**os.environ, "GRPC_VERBOSITY": "ERROR"},
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"transfer floor server did not start (said {line!r})")
        self.address = f"127.0.0.1:{int(line)}"

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> FloorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def first_message(channel: grpc.aio.Channel, method: str, request: bytes) -> tuple[float, int]:
    """Seconds from the call's start until its first message's bytes are in hand, and their length."""
    watch = channel.unary_stream(method, request_serializer=None, response_deserializer=None)
    t0 = time.perf_counter()
    call = watch(request, timeout=60.0)
    try:
        async for payload in call:
            return time.perf_counter() - t0, len(payload)
    finally:
        call.cancel()
    raise RuntimeError(f"{method} ended without a message")


async def time_floor(address: str, count: int, out: Samples) -> None:
    """`count` calls to a FloorServer at `address` over one channel (warmed by one untimed call)."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        await first_message(channel, _METHOD, b"")
        for _ in range(count):
            took, _size = await first_message(channel, _METHOD, b"")
            out.add(took)


def unary_get(channel: grpc.aio.Channel) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
    """A FloorServer's unary call on `channel`, bytes in and out (no (de)serializers)."""
    return channel.unary_unary(_UNARY, request_serializer=None, response_deserializer=None)


async def time_unary_floor(address: str, count: int, out: Samples, *, warmup: int = 5) -> None:
    """`count` unary calls to a FloorServer at `address` over one channel, each timed from its
    start until the answer's bytes are in hand (after `warmup` untimed ones, as bench/scale.py's Gets)."""
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        await channel.channel_ready()
        get = unary_get(channel)
        for i in range(warmup + count):
            t0 = time.perf_counter()
            await get(b"", timeout=30.0)
            if i >= warmup:
                out.add(time.perf_counter() - t0)


async def measure_floor(size: int, count: int) -> Samples:
    out = Samples()
    with FloorServer(size) as server:
        await time_floor(server.address, count, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.transfer_floor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bytes", type=int, default=23_000_000, help="the message's size")
    ap.add_argument("--count", type=int, default=10, help="timed calls")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        asyncio.run(_serve(a.bytes))
        return 0
    samples = asyncio.run(measure_floor(a.bytes, a.count))
    ms = sorted(1000 * v for v in samples.values)
    print(
        f"{a.bytes / 1e6:.1f} MB, one server-streamed message: p50 {1000 * samples.p50:.1f} ms"
        f" (min {ms[0]:.1f}, max {ms[-1]:.1f}; {len(ms)} calls; load {os.getloadavg()[0]:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
