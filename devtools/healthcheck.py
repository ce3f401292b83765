"""Container health probe: exit 0 only when this container's Myko service serves.

    python -m devtools.healthcheck [SERVICE]      # SERVICE defaults to $MYKO_SERVICE

gRPC services are asked `grpc.health.v1.Health/Check` for the whole server (the
empty service name) on 127.0.0.1 at the port their settings use; they answer
SERVING only once caught up. The gateway is asked `GET /healthz` and must answer
200. With MYKO_TLS_* set the probe speaks TLS as a client of that port would
(myko/tls.py), presenting the service's own certificate where one is required. Anything else exits 1, with the reason on stdout, which Docker keeps in the
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
from myko.settings import TlsSettings
from myko.tls import Transport


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


def _transport(env: Mapping[str, str]) -> Transport:
    return Transport(TlsSettings.from_env(env))


def check_grpc(
    port: int, *, timeout_s: float, service: str = "", env: Mapping[str, str] | None = None
) -> Verdict:
    target = f"127.0.0.1:{port}"
    transport = _transport(env or {})
    spec = catalogue.service(service) if service else None
    credentials = transport.channel_credentials(internal=spec is not None and spec.internal)
    if credentials is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, credentials, options=transport.channel_options(service))
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout_s)
        except grpc.RpcError as e:
            return Verdict(healthy=False, detail=f"{target}: health check failed: {e.code().name}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return Verdict(
        healthy=response.status == health_pb2.HealthCheckResponse.SERVING, detail=f"{target}: {status}"
    )


def check_http(port: int, *, timeout_s: float, env: Mapping[str, str] | None = None) -> Verdict:
    transport = _transport(env or {})
    https = transport.https_context() is not None
    url = f"{'https' if https else 'http'}://127.0.0.1:{port}/healthz"
    # No proxies: an HTTP(S)_PROXY in the container must not reroute loopback.
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if https:
        handlers.append(urllib.request.HTTPSHandler(context=transport.probe_context()))
    opener = urllib.request.build_opener(*handlers)
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
        if spec.http:
            return check_http(port, timeout_s=timeout_s, env=env)
        return check_grpc(port, timeout_s=timeout_s, service=service, env=env)
    except ConfigError as e:
        return Verdict(healthy=False, detail=e.message)
    except ValueError as e:
        return Verdict(healthy=False, detail=str(e))


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
