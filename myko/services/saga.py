"""saga_svc: `python -m myko.services.saga` (settings: myko.settings.SagaSettings)."""

from __future__ import annotations

import logging
import os
import signal

from myko.app import App
from myko.metrics import Metrics
from myko.runner import run
from myko.saga_event import SagaEvent
from myko.saga_service import SagaService
from myko.settings import SagaSettings
from myko.tracing import Tracing


def _crash(event: SagaEvent) -> None:
    # MYKO_SAGA_TEST_CRASH_AFTER_EXECUTE: the commands are acknowledged and the
    # offset is not committed yet; die the way a killed container does.
    logging.getLogger("saga_svc").warning("fault injection: SIGKILL after executing %s", event)
    logging.shutdown()
    os.kill(os.getpid(), signal.SIGKILL)


def build(settings: SagaSettings, app: App, *, metrics: Metrics, tracing: Tracing) -> SagaService:
    return SagaService(
        settings,
        app,
        after_execute=_crash if settings.test_crash_after_execute else None,
        metrics=metrics,
        tracing=tracing,
    )


def main() -> None:
    run(SagaSettings, build)


if __name__ == "__main__":
    main()
