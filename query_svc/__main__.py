"""query_svc: `python -m query_svc` (settings: myko.settings.QuerySettings)."""

from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.runner import run
from myko.settings import QuerySettings

run(QuerySettings, lambda settings, app: LiveService(settings, app, kind=LiveKind.QUERY))
