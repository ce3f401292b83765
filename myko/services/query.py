"""query_svc: `python -m myko.services.query` (settings: myko.settings.QuerySettings)."""

from myko.app import App
from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.metrics import Metrics
from myko.runner import run
from myko.settings import QuerySettings
from myko.tracing import Tracing


def build(settings: QuerySettings, app: App, *, metrics: Metrics, tracing: Tracing) -> LiveService:
    return LiveService(settings, app, kind=LiveKind.QUERY, metrics=metrics, tracing=tracing)


def main() -> None:
    run(QuerySettings, build)


if __name__ == "__main__":
    main()
