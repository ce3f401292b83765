"""repo_svc: `python -m repo_svc`, this repository's runner of myko.services.repo."""

from myko.services.repo import main

main()
