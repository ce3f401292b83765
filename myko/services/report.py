"""report_svc: `python -m myko.services.report` (settings: myko.settings.ReportSettings)."""

from myko.app import App
from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.metrics import Metrics
from myko.runner import run
from myko.settings import ReportSettings


def build(settings: ReportSettings, app: App, metrics: Metrics) -> LiveService:
    return LiveService(settings, app, kind=LiveKind.REPORT, metrics=metrics)


def main() -> None:
    run(ReportSettings, build)


if __name__ == "__main__":
    main()
