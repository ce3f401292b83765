"""Every secret a secured Swarm stack uses, made once into a directory (docs/deploy.md, "Security").

    myko stack-secrets .run/secrets          # then `docker secret create <name> <file>` for each

Names are the Swarm secret names `swarm/docker-stack.security.yml` declares:

- `myko_tls_ca`: the CA certificate every service trusts (its key stays in
  `<dir>/pki/ca.key`, which is *not* a secret of the stack: keep it offline);
- `myko_tls_<service>_cert`, `myko_tls_<service>_key`: each service's
  certificate (its identity: the service name; also valid as `tasks.<service>`
  and for the hosts given) and private key;
- `myko_tls_idp_cert`, `myko_tls_idp_key`: the stack's identity provider's
  (HTTPS), naming `idp` and the `idp_hosts` its public URL uses;
- `myko_kafka_<user>_password`: the Kafka passwords of the services (command,
  repo, saga: SCRAM users that `myko kafka-access` creates) and of the
  cluster's administrator (admin); the brokers' and controllers' own
  passwords stay in the directory, inside the JAAS entries below;
- `myko_kafka_broker_jaas`, `myko_kafka_controller_jaas`: the brokers' JAAS
  entries for their client and controller listeners, built from those
  passwords (myko/kafka_access.py, `broker_sasl_properties`);
- `grafana_admin_password`: Grafana's `admin` password (the base stack's).

Files already there are kept (run it again after adding a service); certificates
are reissued when they are missing or within 30 days of expiry.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from myko import catalogue
from myko.kafka_access import plain_jaas
from myko.pki import CA_CERT, ensure_service_certs

KAFKA_OWN_USERS = ("admin", "broker", "controller")
KAFKA_SERVICE_USERS = tuple(spec.name for spec in catalogue.SERVICES if spec.kafka)


def _secret_file(path: Path, make: str) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make)
    return path


IDP = "idp"


def make_stack_secrets(
    directory: Path, *, hosts: Sequence[str] = (), idp_hosts: Sequence[str] = ()
) -> dict[str, Path]:
    """Secret name -> the file holding it, every one made unless already in `directory`."""
    out: dict[str, Path] = {}
    names = [spec.name for spec in catalogue.SERVICES]
    pki = directory / "pki"
    certs = {name: ensure_service_certs(pki, [name], hosts=[f"tasks.{name}", *hosts])[name] for name in names}
    certs[IDP] = ensure_service_certs(pki, [IDP], hosts=[f"tasks.{IDP}", *hosts, *idp_hosts])[IDP]
    out["myko_tls_ca"] = pki / CA_CERT
    for name, files in certs.items():
        out[f"myko_tls_{name}_cert"] = files.cert
        out[f"myko_tls_{name}_key"] = files.key
    passwords: dict[str, str] = {}
    for user in (*KAFKA_OWN_USERS, *KAFKA_SERVICE_USERS):
        path = _secret_file(directory / "kafka" / f"{user}.password", secrets.token_urlsafe(24))
        passwords[user] = path.read_text()
        if user not in ("broker", "controller"):
            out[f"myko_kafka_{user}_password"] = path
    # Derived from the passwords: rewritten every time, so they always agree.
    jaas = {
        "broker": plain_jaas("broker", {"broker": passwords["broker"], "admin": passwords["admin"]}),
        "controller": plain_jaas("controller", {"controller": passwords["controller"]}),
    }
    for listener, entry in jaas.items():
        path = directory / "kafka" / f"{listener}.jaas"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(entry)
        out[f"myko_kafka_{listener}_jaas"] = path
    # Grafana's `admin` password (swarm/docker-stack.yml, docs/observability.md).
    out["grafana_admin_password"] = _secret_file(
        directory / "grafana" / "admin.password", secrets.token_urlsafe(24)
    )
    return out
