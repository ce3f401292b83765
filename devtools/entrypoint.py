"""Container entrypoint: one image for every service, chosen when it starts.

    python -m devtools.entrypoint [SERVICE]       # SERVICE defaults to $MYKO_SERVICE

The service's module comes from the catalogue (myko/catalogue.py). Swarm hands secrets and configs to a container as files. For every
`MYKO_*_FILE` or `KAFKA_*_FILE` variable this sets the variable without the
suffix to that file's contents (trailing newline dropped), the convention of the
official database images: settings keep reading plain variables, and any of
them can come from a secret or config. Then the process replaces itself with
`python -m <service module>`, so no wrapper sits between the service and the
signals Swarm sends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from myko import catalogue
from myko.catalogue import SERVICE_ENV
from myko.errors import ConfigError
from myko.settings import resolve_file_vars

__all__ = ["main", "resolve_file_vars", "service_module"]


def service_module(service: str) -> str:
    try:
        return catalogue.service(service).module
    except ConfigError as e:
        raise ConfigError(f"{SERVICE_ENV}: {e.message}") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    service = args[0] if args else os.environ.get(SERVICE_ENV, "").strip()
    try:
        if not service:
            raise ConfigError(f"no service: pass one or set {SERVICE_ENV}")
        module = service_module(service)
        env = resolve_file_vars(os.environ)
    except ConfigError as e:
        print(f"myko entrypoint: {e.message}", file=sys.stderr)
        return 2
    env[SERVICE_ENV] = service
    os.execve(sys.executable, [sys.executable, "-m", module], env)


if __name__ == "__main__":
    sys.exit(main())
