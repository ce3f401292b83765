"""Container health probe: exit 0 only when this container's Myko service serves.

    python -m devtools.healthcheck [SERVICE]      # SERVICE defaults to $MYKO_SERVICE

gRPC services are asked `grpc.health.v1.Health/Check` for the whole server (the
empty service name) on 127.0.0.1 at the port their settings use; they answer
SERVING only once caught up. The gateway is asked `GET /healthz` and must answer
200. Anything else exits 1, with the reason on stdout, which Docker keeps in the
container's health log (`docker inspect`).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from myko import catalogue
from myko.catalogue import SERVICE_ENV
from myko.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Verdict:
    healthy: bool
    detail: str


def service_port(service: str, env: Mapping[str, str]) -> int:
    """The port `service` listens on: the variable its settings read, else the catalogue's default."""
    spec = catalogue.service(service)
    raw = env.get(spec.port_env, "").strip()
    if not raw:
        return spec.port
    if not raw.isdigit():
        raise ValueError(f"{spec.port_env}={raw!r} is not a port")
    return int(raw)


def check_grpc(port: int, *, timeout_s: float) -> Verdict:
    target = f"127.0.0.1:{port}"
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError as e:
            return Verdict(healthy=False, detail=f"{target}: health check failed: {e.code().name}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return Verdict(
        healthy=response.status == health_pb2.HealthCheckResponse.SERVING, detail=f"{target}: {status}"
    )


def check_http(port: int, *, timeout_s: float) -> Verdict:
    url = f"http://127.0.0.1:{port}/healthz"
    # No proxies: an HTTP(S)_PROXY in the container must not reroute loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout_s) as response:
            status = int(response.status)
    except urllib.error.HTTPError as e:
        status = e.code
    except (urllib.error.URLError, OSError) as e:
        return Verdict(healthy=False, detail=f"{url}: {e}")
    return Verdict(healthy=status == 200, detail=f"{url}: HTTP {status}")


def probe(service: str, env: Mapping[str, str], *, timeout_s: float) -> Verdict:
    try:
        spec = catalogue.service(service)
        port = service_port(service, env)
    except ConfigError as e:
        return Verdict(healthy=False, detail=e.message)
    except ValueError as e:
        return Verdict(healthy=False, detail=str(e))
    if spec.http:
        return check_http(port, timeout_s=timeout_s)
    return check_grpc(port, timeout_s=timeout_s)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog="python -m devtools.healthcheck", description=__doc__)
    parser.add_argument("service", nargs="?", default=env.get(SERVICE_ENV, ""))
    # Below Docker's healthcheck timeout (10s in the stack), so we report, not get killed.
    parser.add_argument("--timeout-s", type=float, default=8.0)
    args = parser.parse_args(argv)
    if not args.service:
        print(f"no service: pass one or set {SERVICE_ENV}")
        return 1
    verdict = probe(args.service, env, timeout_s=args.timeout_s)
    print(verdict.detail)
    return 0 if verdict.healthy else 1


if __name__ == "__main__":
    sys.exit(main())
