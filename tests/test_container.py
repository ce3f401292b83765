"""The image's entrypoint and health probe, against real servers on loopback.

The probe is what Swarm runs every few seconds to decide whether a task lives:
it must say healthy only for a SERVING gRPC server (or a gateway answering
/healthz with 200) and unhealthy for everything else.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from devtools import entrypoint, healthcheck
from myko.errors import ConfigError
from myko.local.ports import free_port


@pytest.fixture
def health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=None).wait(5)


class _Healthz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@pytest.fixture
def healthz_server() -> Iterator[tuple[int, type[_Healthz]]]:
    handler = type("Handler", (_Healthz,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_serving_grpc_service_is_healthy(health_server: tuple[int, health.HealthServicer]) -> None:
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main(["query"], {"MYKO_QUERY_PORT": str(port)}) == 0


def test_a_service_not_yet_serving_is_unhealthy(
    health_server: tuple[int, health.HealthServicer], capsys: pytest.CaptureFixture[str]
) -> None:
    port, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.main([], {"MYKO_SERVICE": "repo", "MYKO_REPO_PORT": str(port)}) == 1
    assert "NOT_SERVING" in capsys.readouterr().out


def test_nothing_listening_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert healthcheck.main(["command", "--timeout-s", "1"], {"MYKO_COMMAND_PORT": str(port)}) == 1
    assert f"127.0.0.1:{port}" in capsys.readouterr().out


def test_the_gateway_is_healthy_only_on_200(healthz_server: tuple[int, type[_Healthz]]) -> None:
    port, handler = healthz_server
    env = {"MYKO_SERVICE": "gateway", "MYKO_GATEWAY_PORT": str(port)}
    assert healthcheck.main([], env) == 0
    handler.status = 503
    assert healthcheck.main([], env) == 1


def test_an_unknown_or_missing_service_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    assert healthcheck.main(["kafka"], {}) == 1
    assert "unknown service 'kafka'" in capsys.readouterr().out
    assert healthcheck.main([], {}) == 1
    assert "MYKO_SERVICE" in capsys.readouterr().out


def test_file_variables_provide_their_value(tmp_path: Path) -> None:
    origins = tmp_path / "cors"
    origins.write_text("https://a.example, https://b.example\n")
    env = entrypoint.resolve_file_vars(
        {"MYKO_GATEWAY_CORS_ORIGINS_FILE": str(origins), "OTHER_FILE": "/nonexistent", "MYKO_HOST": "0.0.0.0"}
    )
    assert env["MYKO_GATEWAY_CORS_ORIGINS"] == "https://a.example, https://b.example"
    assert env["MYKO_HOST"] == "0.0.0.0"
    assert "OTHER" not in env  # not ours: left alone


def test_file_variables_fail_loudly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MYKO_X_FILE='/nonexistent/x' cannot be read"):
        entrypoint.resolve_file_vars({"MYKO_X_FILE": "/nonexistent/x"})
    (tmp_path / "x").write_text("1")
    with pytest.raises(ConfigError, match="MYKO_X and MYKO_X_FILE are both set"):
        entrypoint.resolve_file_vars({"MYKO_X_FILE": str(tmp_path / "x"), "MYKO_X": "2"})


def test_a_setting_named_file_is_a_path_not_an_indirection(tmp_path: Path) -> None:
    # MYKO_OIDC_CA_FILE names the CA bundle the service opens itself; empty means the system's CAs.
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for value in (str(ca), ""):
        env = entrypoint.resolve_file_vars({"MYKO_OIDC_CA_FILE": value})
        assert env == {"MYKO_OIDC_CA_FILE": value}


def test_the_entrypoint_refuses_an_unknown_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert entrypoint.main(["kafka"]) == 2
    assert "choose one of repo, command, query, report, saga, gateway" in capsys.readouterr().err
