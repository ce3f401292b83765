"""Testing an application against a real Kafka: its services in the test's event loop.

    async with AppStack(app, bootstrap_servers=kafka) as stack:
        channel = grpc.aio.insecure_channel(stack.command_addr)
        ...

`AppStack` runs repo, command, query and report (and saga, when the app has
sagas) in-process on free ports, on topics private to this stack (a fresh
MYKO_TOPIC_PREFIX), so tests may share one broker without seeing each other's
data. `local_kafka()` yields the broker to use: KAFKA_BOOTSTRAP_SERVERS when
set, else a LocalKafka started for the duration (needs java and mvn). What
`myko new` scaffolds uses both (tests/conftest.py of the new app).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TypeVar

from myko.app import App
from myko.command_service import CommandService
from myko.lifecycle import Lifecycle
from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.repo_service import RepoService
from myko.saga_service import SagaService
from myko.settings import CommandSettings, QuerySettings, ReportSettings, RepoSettings, SagaSettings

S = TypeVar("S", bound=Lifecycle)


@contextmanager
def local_kafka(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Bootstrap servers of the broker tests use: KAFKA_BOOTSTRAP_SERVERS, or a LocalKafka of their own."""
    env = os.environ if env is None else env
    existing = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if existing:
        yield existing
        return
    from myko.local.kafka import LocalKafka  # only when no broker is given: it needs java

    with LocalKafka() as kafka:
        yield kafka.bootstrap_servers


class AppStack(Lifecycle):
    """An application's services on one broker, on free ports and private topics."""

    def __init__(
        self,
        app: App,
        *,
        bootstrap_servers: str,
        topic_prefix: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
        self.topic_prefix = topic_prefix or f"t{uuid.uuid4().hex[:10]}."
        self.env: dict[str, str] = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers,
            "MYKO_TOPIC_PREFIX": self.topic_prefix,
            "MYKO_APP": app.name,
            "MYKO_INSTANCE_ID": f"test-{self.topic_prefix}",
            "MYKO_COMMAND_PORT": "0",
            "MYKO_QUERY_PORT": "0",
            "MYKO_REPORT_PORT": "0",
            "MYKO_REPO_PORT": "0",
            "MYKO_SAGA_PORT": "0",
            # Open unless extra_env names an issuer (MYKO_OIDC_ISSUER and its settings).
            **({} if (extra_env or {}).get("MYKO_OIDC_ISSUER") else {"MYKO_AUTH_DISABLED": "true"}),
            **(extra_env or {}),
        }
        self.repo: RepoService | None = None
        self.command: CommandService | None = None
        self.query: LiveService | None = None
        self.report: LiveService | None = None
        self.saga: SagaService | None = None
        self._started: list[Lifecycle] = []

    @property
    def command_addr(self) -> str:
        assert self.command is not None, "not started"
        return f"127.0.0.1:{self.command.grpc.port}"

    @property
    def query_addr(self) -> str:
        assert self.query is not None, "not started"
        return f"127.0.0.1:{self.query.grpc.port}"

    @property
    def report_addr(self) -> str:
        assert self.report is not None, "not started"
        return f"127.0.0.1:{self.report.grpc.port}"

    async def start(self) -> None:
        try:
            self.repo = await self._start(RepoService(RepoSettings.from_env(self.env), self.app))
            live_env = {**self.env, "MYKO_REPO_ADDR": f"127.0.0.1:{self.repo.grpc.port}"}
            self.command = await self._start(CommandService(CommandSettings.from_env(self.env), self.app))
            self.query = await self._start(
                LiveService(QuerySettings.from_env(live_env), self.app, kind=LiveKind.QUERY)
            )
            self.report = await self._start(
                LiveService(ReportSettings.from_env(live_env), self.app, kind=LiveKind.REPORT)
            )
            if self.app.sagas:
                saga_env = {**self.env, "MYKO_COMMAND_ADDR": self.command_addr}
                self.saga = await self._start(SagaService(SagaSettings.from_env(saga_env), self.app))
        except BaseException:
            await self.stop()
            raise

    async def _start(self, service: S) -> S:
        await service.start()
        self._started.append(service)
        return service

    async def stop(self) -> None:
        while self._started:
            await self._started.pop().stop()
