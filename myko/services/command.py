"""command_svc: `python -m myko.services.command` (settings: myko.settings.CommandSettings)."""

from myko.app import App
from myko.command_service import CommandService
from myko.metrics import Metrics
from myko.runner import run
from myko.settings import CommandSettings
from myko.tracing import Tracing


def build(settings: CommandSettings, app: App, *, metrics: Metrics, tracing: Tracing) -> CommandService:
    return CommandService(settings, app, metrics=metrics, tracing=tracing)


def main() -> None:
    run(CommandSettings, build)


if __name__ == "__main__":
    main()
