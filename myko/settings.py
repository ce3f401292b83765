"""Typed settings, one object per service, read from the environment.

Each service calls `XSettings.from_env()` once at its entry point and passes the
object down; nothing reads `os.environ` anywhere else. Bad values fail fast with
`ConfigError` naming the variable. docs/configuration.md lists every variable.
"""

from __future__ import annotations

import builtins
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Self

from myko.errors import ConfigError

DEFAULT_PORTS = {
    "command": 50051,
    "query": 50052,
    "report": 50053,
    "repo": 50054,
    "saga": 50055,
    "gateway": 8080,
}


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def str(self, name: builtins.str, default: builtins.str) -> builtins.str:
        value = self._env.get(name, default).strip()
        if not value:
            raise ConfigError(f"{name} must not be empty")
        return value

    def required(self, name: builtins.str, hint: builtins.str) -> builtins.str:
        value = self._env.get(name, "").strip()
        if not value:
            raise ConfigError(f"{name} is not set: {hint}")
        return value

    def opt_str(self, name: builtins.str, default: builtins.str = "") -> builtins.str:
        return self._env.get(name, default).strip()

    def int(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        minimum: builtins.int = 0,
        maximum: builtins.int | None = None,
    ) -> builtins.int:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise ConfigError(f"{name}={value} must be >= {minimum}{upper}")
        return value

    def port(self, name: builtins.str, default: builtins.int) -> builtins.int:
        # 0 asks the OS for a free port (tests).
        return self.int(name, default, minimum=0, maximum=65535)

    def addr(self, name: builtins.str, default: builtins.str) -> builtins.str:
        value = self.str(name, default)
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"{name}={value!r} must be HOST:PORT")
        return value

    def list(self, name: builtins.str, default: builtins.str = "") -> tuple[builtins.str, ...]:
        return tuple(p.strip() for p in self._env.get(name, default).split(",") if p.strip())


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    # Prefixed to every topic name: lets tests and tenants share one cluster.
    topic_prefix: str = ""
    topic_partitions: int = 3
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1
    request_timeout_ms: int = 30_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        servers = e.str("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers)
        for s in servers.split(","):
            host, sep, port = s.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS entry {s!r} must be HOST:PORT")
        return cls(
            bootstrap_servers=servers,
            topic_prefix=e.opt_str("MYKO_TOPIC_PREFIX"),
            topic_partitions=e.int("MYKO_TOPIC_PARTITIONS", cls.topic_partitions, minimum=1),
            topic_replication_factor=e.int(
                "MYKO_TOPIC_REPLICATION_FACTOR", cls.topic_replication_factor, minimum=1
            ),
            topic_min_insync_replicas=e.int(
                "MYKO_TOPIC_MIN_INSYNC_REPLICAS", cls.topic_min_insync_replicas, minimum=1
            ),
            request_timeout_ms=e.int("MYKO_KAFKA_REQUEST_TIMEOUT_MS", cls.request_timeout_ms, minimum=1000),
        )


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """What every gRPC service shares: where it listens and what it loads."""

    service: str
    host: str = "127.0.0.1"
    port: int = 0
    # Module exposing `app: myko.App` with the application's handlers.
    app_module: str
    # Names this process in events and Kafka transactional ids; keep it stable
    # across restarts of the same replica (Swarm: command-{{.Task.Slot}}).
    instance_id: str = ""
    # Transport limit; larger requests get RESOURCE_EXHAUSTED from gRPC itself.
    max_message_bytes: int = 8 * 1024 * 1024
    log_level: str = "INFO"
    kafka: KafkaSettings = field(default_factory=KafkaSettings)

    @classmethod
    def _common(cls, service: str, env: Mapping[str, str] | None) -> dict[str, object]:
        src = os.environ if env is None else env
        e = _Env(src)
        level = e.str("MYKO_LOG_LEVEL", "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"MYKO_LOG_LEVEL={level!r} must be DEBUG, INFO, WARNING or ERROR")
        upper = service.upper()
        return {
            "service": service,
            "host": e.str("MYKO_HOST", "127.0.0.1"),
            "port": e.port(f"MYKO_{upper}_PORT", DEFAULT_PORTS[service]),
            "app_module": e.required("MYKO_APP", "name the module exposing your `app: myko.App`"),
            "instance_id": e.opt_str("MYKO_INSTANCE_ID") or f"{service}-{socket.gethostname()}",
            "max_message_bytes": e.int("MYKO_MAX_MESSAGE_BYTES", 8 * 1024 * 1024, minimum=1024),
            "log_level": level,
            "kafka": KafkaSettings.from_env(src),
        }

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class CommandSettings(ServerSettings):
    # Largest Any payload a command may carry; larger gets INVALID_ARGUMENT.
    max_command_bytes: int = 512 * 1024
    # How long a tx id is remembered for exactly-once retries.
    tx_retention_ms: int = 7 * 24 * 3600 * 1000
    # Re-runs of a handler whose reads went stale before it could commit.
    conflict_retries: int = 8
    # Where other replicas reach this one when it leads (HOST:PORT); empty means
    # this host's name (or MYKO_HOST when it is a specific address) and the bound port.
    advertise_addr: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        return cls(
            **cls._common("command", env),  # type: ignore[arg-type]
            max_command_bytes=e.int("MYKO_MAX_COMMAND_BYTES", 512 * 1024, minimum=1024),
            tx_retention_ms=e.int("MYKO_TX_RETENTION_MS", 7 * 24 * 3600 * 1000, minimum=60_000),
            conflict_retries=e.int("MYKO_CONFLICT_RETRIES", 8, minimum=0),
            advertise_addr=e.addr("MYKO_ADVERTISE_ADDR", "_:0") if e.opt_str("MYKO_ADVERTISE_ADDR") else "",
        )


@dataclass(frozen=True, kw_only=True)
class RepoSettings(ServerSettings):
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        return cls(**cls._common("repo", env))  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class LiveSettings(ServerSettings):
    """query_svc and report_svc: live buses over a mirror of repo_svc."""

    SERVICE: ClassVar[str]
    repo_addr: str = "127.0.0.1:50054"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        return cls(
            **cls._common(cls.SERVICE, env),  # type: ignore[arg-type]
            repo_addr=e.addr("MYKO_REPO_ADDR", "127.0.0.1:50054"),
        )


@dataclass(frozen=True, kw_only=True)
class QuerySettings(LiveSettings):
    SERVICE = "query"


@dataclass(frozen=True, kw_only=True)
class ReportSettings(LiveSettings):
    SERVICE = "report"


@dataclass(frozen=True, kw_only=True)
class SagaSettings(ServerSettings):
    command_addr: str = "127.0.0.1:50051"
    group_id: str = "myko-saga"
    max_attempts: int = 5
    backoff_initial_ms: int = 200
    backoff_max_ms: int = 10_000
    # Topic name before the prefix; events that kept failing land here with the reason.
    dead_letter_topic: str = "myko.dead-letter"
    # Fault injection for tests, never for production: SIGKILL this process right
    # after a saga's commands are acknowledged and before the offset is committed.
    test_crash_after_execute: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        return cls(
            **cls._common("saga", env),  # type: ignore[arg-type]
            command_addr=e.addr("MYKO_COMMAND_ADDR", "127.0.0.1:50051"),
            group_id=e.str("MYKO_SAGA_GROUP_ID", "myko-saga"),
            max_attempts=e.int("MYKO_SAGA_MAX_ATTEMPTS", 5, minimum=1),
            backoff_initial_ms=e.int("MYKO_SAGA_BACKOFF_INITIAL_MS", 200, minimum=1),
            backoff_max_ms=e.int("MYKO_SAGA_BACKOFF_MAX_MS", 10_000, minimum=1),
            dead_letter_topic=e.str("MYKO_DEAD_LETTER_TOPIC", "myko.dead-letter"),
            test_crash_after_execute=e.int("MYKO_SAGA_TEST_CRASH_AFTER_EXECUTE", 0, maximum=1) == 1,
        )


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """The grpc-web gateway: where it listens, where the public buses are, what it serves."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORTS["gateway"]
    command_addr: str = "127.0.0.1:50051"
    query_addr: str = "127.0.0.1:50052"
    report_addr: str = "127.0.0.1:50053"
    # Origins allowed to call from another origin; "*" allows any. Empty: same origin only.
    cors_origins: tuple[str, ...] = ()
    # The built UI (vite build output); missing means API only.
    ui_dist: str = "ui/dist"
    # Idle LiveBus sessions get a heartbeat this often so dead connections are noticed.
    live_heartbeat_ms: int = 10_000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        level = e.str("MYKO_LOG_LEVEL", "INFO").upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"MYKO_LOG_LEVEL={level!r} must be DEBUG, INFO, WARNING or ERROR")
        origins = [str(o) for o in e.list("MYKO_GATEWAY_CORS_ORIGINS")]
        for o in origins:
            if o != "*" and not o.startswith(("http://", "https://")):
                raise ConfigError(f"MYKO_GATEWAY_CORS_ORIGINS entry {o!r} must be * or start with http(s)://")
        return cls(
            host=e.str("MYKO_HOST", "127.0.0.1"),
            port=e.port("MYKO_GATEWAY_PORT", DEFAULT_PORTS["gateway"]),
            command_addr=e.addr("MYKO_COMMAND_ADDR", "127.0.0.1:50051"),
            query_addr=e.addr("MYKO_QUERY_ADDR", "127.0.0.1:50052"),
            report_addr=e.addr("MYKO_REPORT_ADDR", "127.0.0.1:50053"),
            cors_origins=tuple(o.rstrip("/") for o in origins),
            ui_dist=e.str("MYKO_UI_DIST", "ui/dist"),
            live_heartbeat_ms=e.int("MYKO_GATEWAY_LIVE_HEARTBEAT_MS", 10_000, minimum=100),
            log_level=level,
        )
