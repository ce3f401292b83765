"""repo_svc: `python -m myko.services.repo` (settings: myko.settings.RepoSettings)."""

from myko.repo_service import RepoService
from myko.runner import run
from myko.settings import RepoSettings


def main() -> None:
    run(RepoSettings, RepoService)


if __name__ == "__main__":
    main()
