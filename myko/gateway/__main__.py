"""`python -m myko.gateway`: the grpc-web gateway, configured from MYKO_* variables."""

from __future__ import annotations

import asyncio
import importlib
import signal
import socket
import sys

from myko import catalogue
from myko.errors import ConfigError
from myko.gateway.server import Gateway
from myko.logs import configure_logging
from myko.metrics import Metrics
from myko.settings import GatewaySettings
from myko.tls import Transport
from myko.trace_export import build_tracing
from myko.tracing import Tracing


async def _serve(settings: GatewaySettings, transport: Transport, tracing: Tracing) -> None:
    # Its registry, built here and passed in; served on GET /metrics (MYKO_GATEWAY_METRICS).
    metrics = Metrics.for_process("gateway", f"gateway-{socket.gethostname()}")
    gateway = Gateway(settings, transport=transport, metrics=metrics, tracing=tracing)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    print(f"gateway: serving {gateway.scheme}://{settings.host}:{gateway.port}", flush=True)
    try:
        await stop.wait()
    finally:
        await gateway.stop()


def main() -> None:
    try:
        settings = GatewaySettings.from_env()
        # Certificates are read and checked before anything listens.
        transport = Transport(settings.tls)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.app_module:
        # Only for its message types: LiveBus canonicalises query and report payloads with them.
        try:
            importlib.import_module(settings.app_module)
        except ImportError as exc:
            print(f"gateway: configuration error: MYKO_APP={settings.app_module!r}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    name = catalogue.GATEWAY.runner
    configure_logging(service=name, level=settings.log_level, fmt=settings.log_format)
    tracing = build_tracing(settings.tracing, service=name)
    try:
        asyncio.run(_serve(settings, transport, tracing))
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    main()
