"""report_svc: `python -m report_svc` (settings: myko.settings.ReportSettings)."""

from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.runner import run
from myko.settings import ReportSettings

run(ReportSettings, lambda settings, app: LiveService(settings, app, kind=LiveKind.REPORT))
