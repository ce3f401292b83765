"""gateway: `python -m gateway`, this repository's runner of myko.services.gateway."""

from myko.services.gateway import main

main()
