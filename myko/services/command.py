"""command_svc: `python -m myko.services.command` (settings: myko.settings.CommandSettings)."""

from myko.command_service import CommandService
from myko.runner import run
from myko.settings import CommandSettings


def main() -> None:
    run(CommandSettings, CommandService)


if __name__ == "__main__":
    main()
