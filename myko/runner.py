"""The entry point every *_svc runner shares: settings, logging, app, run until signalled."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Protocol, TypeVar

from myko.app import App, load_app
from myko.errors import ConfigError, MykoError
from myko.server import configure_logging, run_until_signalled
from myko.settings import ServerSettings

S = TypeVar("S", bound=ServerSettings)


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def run(settings_cls: type[S], build: Callable[[S, App], Service]) -> None:
    try:
        settings = settings_cls.from_env()  # type: ignore[attr-defined]
        configure_logging(settings.log_level)
        app = load_app(settings.app_module)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

    async def main() -> None:
        # Built inside the loop: grpc.aio servers bind to the loop that creates them.
        service = build(settings, app)
        await run_until_signalled(service.start, service.stop)

    try:
        asyncio.run(main())
    except MykoError as exc:
        logging.getLogger(settings.service).error("%s stopped: %s", settings.service, exc)
        raise SystemExit(1) from None
