"""The example application: Targets grouped into Zones.

It is what `make run` serves and shows every Myko concept. Your own application
is a module like this one, named by MYKO_APP, exposing `app: myko.App`. Each
module below declares its part with decorators on its own `Handlers`; the app
includes them.
"""

from myko import App
from targets.v1 import entities_pb2

from . import queries, relations, reports, target_commands, zone_commands

app = App("targets")
app.entity(entities_pb2.Target)
app.entity(entities_pb2.Zone)
app.include(
    target_commands.handlers,
    zone_commands.handlers,
    queries.handlers,
    reports.handlers,
    relations.handlers,
)

__all__ = ["app"]
