"""command_svc: `python -m command_svc`, this repository's runner of myko.services.command."""

from myko.services.command import main

main()
