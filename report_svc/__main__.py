"""report_svc: `python -m report_svc`, this repository's runner of myko.services.report."""

from myko.services.report import main

main()
