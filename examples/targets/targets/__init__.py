"""The example application: Targets grouped into Zones.

It is what `make run` serves and shows every Myko concept. Your own application
is a module like this one, named by MYKO_APP, exposing `app: myko.App`.
"""

from myko import App

from . import queries, reports, sagas, target_commands, zone_commands

app = App("targets")
target_commands.register(app)
zone_commands.register(app)
queries.register(app)
reports.register(app)
sagas.register(app)

__all__ = ["app"]
