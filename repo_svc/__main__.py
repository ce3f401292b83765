"""repo_svc: `python -m repo_svc` (settings: myko.settings.RepoSettings)."""

from myko.repo_service import RepoService
from myko.runner import run
from myko.settings import RepoSettings

run(RepoSettings, RepoService)
