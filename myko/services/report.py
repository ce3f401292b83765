"""report_svc: `python -m myko.services.report` (settings: myko.settings.ReportSettings)."""

from myko.app import App
from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.metrics import Metrics
from myko.runner import run
from myko.settings import ReportSettings
from myko.tracing import Tracing


def build(settings: ReportSettings, app: App, *, metrics: Metrics, tracing: Tracing) -> LiveService:
    return LiveService(settings, app, kind=LiveKind.REPORT, metrics=metrics, tracing=tracing)


def main() -> None:
    run(ReportSettings, build)


if __name__ == "__main__":
    main()
