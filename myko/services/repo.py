"""repo_svc: `python -m myko.services.repo` (settings: myko.settings.RepoSettings)."""

from myko.app import App
from myko.metrics import Metrics
from myko.repo_service import RepoService
from myko.runner import run
from myko.settings import RepoSettings
from myko.tracing import Tracing


def build(settings: RepoSettings, app: App, *, metrics: Metrics, tracing: Tracing) -> RepoService:
    return RepoService(settings, app, metrics=metrics, tracing=tracing)


def main() -> None:
    run(RepoSettings, build)


if __name__ == "__main__":
    main()
