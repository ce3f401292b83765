"""The service entry points, one module per service of the catalogue (myko/catalogue.py).

    python -m myko.services.command     # or: myko serve command

Each reads its settings from the environment (docs/configuration.md), loads the
application named by MYKO_APP and runs until SIGTERM or Ctrl-C. This
repository's `*_svc/` and `gateway/` folders are thin runners calling the same
`main()`.
"""
