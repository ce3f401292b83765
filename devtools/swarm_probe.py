"""Probe every task of the deployed stack from inside its network; print one JSON report.

    docker run --rm --network myko_myko --entrypoint python myko:0.1.0 -m devtools.swarm_probe

Run in a tools container on the stack's overlay network (the image is Myko's
own, so nothing else needs building). For every Myko service it resolves
`tasks.<service>` (every task's own address, whatever the service's endpoint
mode) and asks each task directly:

- gRPC services: `grpc.health.v1.Health/Check` for the whole server, and the
  service list through server reflection;
- the gateway: `GET /healthz`;
- each Kafka broker: an ApiVersions request on 9092;
- the identity provider (`idp`, when the stack runs one): its discovery
  document on 8443, over HTTPS when the probe has the CA.

Exit 0 when every task answers healthy, 1 otherwise; the report says which.

Against the secured stack (docker-stack.security.yml) give it a certificate
repo_svc accepts and the CA, as MYKO_TLS_* (myko/tls.py), e.g. query's from
.run/swarm/secrets/pki mounted read-only (`--user 0`: the key files are the
host user's, mode 0600) with MYKO_TLS_PUBLIC=true; it then speaks TLS to every
port, presenting that certificate where one is required.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from myko import catalogue
from myko.settings import TlsSettings
from myko.tls import Transport

BROKERS = ("kafka-1", "kafka-2", "kafka-3")
KAFKA_PORT = 9092
IDP = "idp"
IDP_PORT = 8443
DISCOVERY_PATH = "/.well-known/openid-configuration"


@dataclass
class TaskReport:
    service: str
    addr: str
    healthy: bool
    detail: str
    services: list[str] = field(default_factory=list)


def task_addresses(service: str) -> list[str]:
    """Every task's IP address: Swarm's DNS answers `tasks.<service>` with all of them."""
    try:
        infos = socket.getaddrinfo(f"tasks.{service}", None, socket.AF_INET, socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return sorted({str(info[4][0]) for info in infos})


def _channel(transport: Transport, service: str, addr: str) -> grpc.Channel:
    credentials = transport.channel_credentials(internal=catalogue.service(service).internal)
    if credentials is None:
        return grpc.insecure_channel(addr)
    return grpc.secure_channel(addr, credentials, options=transport.channel_options(service))


def probe_grpc(service: str, ip: str, port: int, timeout_s: float, transport: Transport) -> TaskReport:
    addr = f"{ip}:{port}"
    with _channel(transport, service, addr) as channel:
        try:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
            replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=timeout_s
            )
            names = sorted(s.name for r in replies for s in r.list_services_response.service)
        except grpc.RpcError as e:
            return TaskReport(service, addr, False, f"{e.code().name}: {e.details()}")
    return TaskReport(service, addr, status == "SERVING", status, names)


def probe_http(
    service: str, ip: str, port: int, timeout_s: float, transport: Transport, path: str = "/healthz"
) -> TaskReport:
    https = transport.https_context() is not None
    url = f"{'https' if https else 'http'}://{ip}:{port}{path}"
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if https:
        handlers.append(urllib.request.HTTPSHandler(context=transport.probe_context()))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout_s) as response:
            code = int(response.status)
    except urllib.error.HTTPError as e:
        code = e.code
    except (urllib.error.URLError, OSError) as e:
        return TaskReport(service, f"{ip}:{port}", False, str(e))
    return TaskReport(service, f"{ip}:{port}", code == 200, f"HTTP {code}")


def probe_broker(name: str, timeout_s: float) -> TaskReport:
    """A broker answers an ApiVersions (v0) request with a well-formed response."""
    body = struct.pack(">hhih", 18, 0, 1, 0)  # api_key, version, correlation_id, client_id=""
    try:
        with socket.create_connection((name, KAFKA_PORT), timeout=timeout_s) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = s.recv(8)
    except OSError as e:
        return TaskReport(name, f"{name}:{KAFKA_PORT}", False, str(e))
    ok = len(head) == 8 and struct.unpack(">i", head[4:8])[0] == 1
    return TaskReport(name, f"{name}:{KAFKA_PORT}", ok, "ApiVersions answered" if ok else "bad reply")


def probe_all(timeout_s: float, transport: Transport) -> list[TaskReport]:
    reports = [probe_broker(b, timeout_s) for b in BROKERS]
    for spec in catalogue.SERVICES:
        ips = task_addresses(spec.name)
        if not ips:
            reports.append(TaskReport(spec.name, f"tasks.{spec.name}", False, "no task resolves"))
        probe = probe_http if spec.http else probe_grpc
        reports += [probe(spec.name, ip, spec.port, timeout_s, transport) for ip in ips]
    # The identity provider is not a catalogued service; a stack with an issuer of its own has none.
    reports += [
        probe_http(IDP, ip, IDP_PORT, timeout_s, transport, DISCOVERY_PATH) for ip in task_addresses(IDP)
    ]
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.swarm_probe", description=__doc__)
    parser.add_argument("--timeout-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    reports = probe_all(args.timeout_s, Transport(TlsSettings.from_env()))
    print(json.dumps([asdict(r) for r in reports], indent=1))
    return 0 if all(r.healthy for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
