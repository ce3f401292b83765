"""Fixtures: one real Kafka broker per test session, topics isolated per test.

The broker is started from Maven Central jars by myko/local/kafka.py, or
taken from KAFKA_BOOTSTRAP_SERVERS when that is set. Each test gets its own
MYKO_TOPIC_PREFIX, so tests share the broker but never each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from myko_client import Clients

from myko.app import App
from myko.client import Client
from myko.command_service import CommandService
from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.local.idp import LocalIdp
from myko.local.kafka import LocalKafka
from myko.repo_service import RepoService
from myko.settings import CommandSettings, QuerySettings, ReportSettings, RepoSettings
from myko.tracing import Tracing


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failed live-swarm test reports the services' errors beside its own: the logs are
    gone with the stack, and an INTERNAL answer names only the ref of a logged traceback."""
    outcome = yield
    report = outcome.get_result()
    live: Any = getattr(item, "funcargs", {}).get("live")
    if report.when == "call" and report.failed and hasattr(live, "service_errors"):
        try:
            report.sections.append(("service errors (docker service logs)", live.service_errors()))
        except Exception as exc:  # the engine may be what failed
            report.sections.append(("service errors (docker service logs)", f"unavailable: {exc!r}"))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    if os.environ.get("MYKO_TEST_BROKER") == "testcontainers":
        # Optional path where a Docker engine exists: pip install -e '.[containers]'.
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    with LocalKafka() as kafka:
        yield kafka.bootstrap_servers


@pytest.fixture(scope="session")
def local_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIdp]:
    """The local identity provider (idp/ on Node): real tokens for the demo users and service clients.

    `local_idp.service_env()` configures services for it; `local_idp.tokens` gets tokens
    (client credentials, a user's sign-in); `local_idp.keys.mint(...)` signs any claims
    with its keys. Access tokens live 60 s here; a test needing expiry makes its own.
    """
    root = Path(__file__).resolve().parent.parent
    with LocalIdp(
        package_dir=root / "idp",
        run_dir=tmp_path_factory.mktemp("idp"),
        ui_origins=["http://127.0.0.1:8080"],
        access_token_ttl_s=60,
    ) as idp:
        yield idp


@pytest.fixture(scope="session")
def client_tarball() -> Path:
    """The @myko/client tarball the wheel ships (`make client-pack`); packed here when a bare pytest run has none."""
    from devtools.pack_client import DEFAULT_OUT, pack

    if not DEFAULT_OUT.is_file():
        pack(DEFAULT_OUT)
    return DEFAULT_OUT


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
def myko_env(kafka_bootstrap: str, topic_prefix: str) -> dict[str, str]:
    """Environment for in-process services: this test's topics, free ports."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "MYKO_TOPIC_PREFIX": topic_prefix,
        "MYKO_APP": "targets",
        "MYKO_TOPIC_PARTITIONS": "3",
        "MYKO_COMMAND_PORT": "0",
        "MYKO_QUERY_PORT": "0",
        "MYKO_REPORT_PORT": "0",
        "MYKO_REPO_PORT": "0",
        "MYKO_INSTANCE_ID": f"test-{topic_prefix}",
        # Identity is tested in tests/test_auth*.py; everything else runs open.
        "MYKO_AUTH_DISABLED": "true",
    }


@pytest.fixture
def example_app() -> App:
    from targets import app

    return app


@dataclass
class InProcessStack:
    """repo, command, query and report services running in the test's event loop."""

    env: dict[str, str]
    app: App
    repo: RepoService
    command: CommandService
    query: LiveService
    report: LiveService
    clients: Clients

    @classmethod
    async def start(
        cls, env: dict[str, str], app: App, *, tracing: Callable[[str], Tracing] | None = None
    ) -> InProcessStack:
        """`tracing(service name)` gives each service its Tracing (tests/test_tracing.py)."""

        def traced(name: str) -> Tracing | None:
            return tracing(name) if tracing is not None else None

        repo = RepoService(RepoSettings.from_env(env), app, tracing=traced("repo_svc"))
        await repo.start()
        live_env = {**env, "MYKO_REPO_ADDR": f"127.0.0.1:{repo.grpc.port}"}
        command = CommandService(CommandSettings.from_env(env), app, tracing=traced("command_svc"))
        query = LiveService(
            QuerySettings.from_env(live_env), app, kind=LiveKind.QUERY, tracing=traced("query_svc")
        )
        report = LiveService(
            ReportSettings.from_env(live_env), app, kind=LiveKind.REPORT, tracing=traced("report_svc")
        )
        for svc in (command, query, report):
            await svc.start()
        clients = Clients(
            command=grpc.aio.insecure_channel(f"127.0.0.1:{command.grpc.port}"),
            query=grpc.aio.insecure_channel(f"127.0.0.1:{query.grpc.port}"),
            report=grpc.aio.insecure_channel(f"127.0.0.1:{report.grpc.port}"),
        )
        return cls(env, app, repo, command, query, report, clients)

    async def stop(self) -> None:
        await self.clients.close()
        for svc in (self.report, self.query, self.command, self.repo):
            await svc.stop()


@pytest.fixture
async def stack(myko_env: dict[str, str], example_app: App) -> AsyncIterator[InProcessStack]:
    s = await InProcessStack.start(myko_env, example_app)
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def client(stack: InProcessStack) -> AsyncIterator[Client]:
    """A typed Client of the in-process stack's command, query and report services."""
    async with Client(
        command_addr=f"127.0.0.1:{stack.command.grpc.port}",
        query_addr=f"127.0.0.1:{stack.query.grpc.port}",
        report_addr=f"127.0.0.1:{stack.report.grpc.port}",
        timeout_s=20.0,
    ) as c:
        yield c
