"""query_svc: `python -m query_svc`, this repository's runner of myko.services.query."""

from myko.services.query import main

main()
