"""The secured local cluster (`make run-cluster`, the cluster tests): SASL/ACLs on Kafka, mTLS between services.

    kafka = LocalKafka(nodes=3, sasl_users=KAFKA_USERS, ...)
    kafka.start()
    security = cluster_security(kafka, run_dir / "pki")
    grant_access(kafka, app="targets", extra_env={"MYKO_TOPIC_PREFIX": prefix})
    services = cluster_stack(..., security=security)

Each Kafka-using service connects as its own SCRAM user; `grant_access` runs
`python -m myko.kafka_access` (what an operator or a Swarm job runs) as the
cluster's admin, which creates those users and their ACLs. Every service gets a certificate with its name from a CA
kept in the run directory (myko/pki.py); public listeners stay plaintext so
the UI and grpcurl work as in `make run`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from myko import catalogue
from myko.local.kafka import LocalKafka
from myko.local.procs import service_env
from myko.local.topology import StackSecurity
from myko.pki import CA_CERT, ensure_service_certs

# The services that use Kafka, each its own principal (User:<service name>).
KAFKA_USERS = tuple(spec.name for spec in catalogue.SERVICES if spec.kafka)


def cluster_security(kafka: LocalKafka | None, pki_dir: Path) -> StackSecurity:
    """Certificates for every service; Kafka credentials for each Kafka user when `kafka` has them."""
    certs = ensure_service_certs(pki_dir, [spec.name for spec in catalogue.SERVICES])
    kafka_env = (
        {name: kafka.client_env(name) for name in KAFKA_USERS} if kafka is not None and kafka.secured else {}
    )
    return StackSecurity(kafka_env=kafka_env, certs=certs, ca=pki_dir / CA_CERT)


def grant_access(
    kafka: LocalKafka,
    *,
    app: str,
    extra_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 120.0,
) -> None:
    """Create the services' users and ACLs for `app` (MYKO_TOPIC_PREFIX and topic names from `extra_env`)."""
    env = service_env({**(extra_env or {}), "MYKO_APP": app, **kafka.access_env()})
    result = subprocess.run(
        [sys.executable, "-m", "myko.kafka_access"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"creating the Kafka users and ACLs failed:\n{result.stderr[-3000:]}")
