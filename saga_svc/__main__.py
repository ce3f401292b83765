"""saga_svc: `python -m saga_svc`, this repository's runner of myko.services.saga."""

from myko.services.saga import main

main()
