"""command_svc: `python -m command_svc` (settings: myko.settings.CommandSettings)."""

from myko.command_service import CommandService
from myko.runner import run
from myko.settings import CommandSettings

run(CommandSettings, CommandService)
