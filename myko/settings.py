"""Typed settings, one object per service, read from the environment.

Each service calls `XSettings.from_env()` once at its entry point and passes the
object down; nothing reads `os.environ` anywhere else. Bad values fail fast with
`ConfigError` naming the variable. docs/configuration.md lists every variable.
"""

from __future__ import annotations

import builtins
import os
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import urlsplit

from myko import catalogue
from myko.errors import ConfigError
from myko.keepalive import DEFAULT_TIME_MS, DEFAULT_TIMEOUT_MS, KeepalivePolicy


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

    def flag(self, name: builtins.str, default: builtins.bool = False) -> builtins.bool:
        raw = self._env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} must be true or false")

    def list(self, name: builtins.str, default: builtins.str = "") -> tuple[builtins.str, ...]:
        return tuple(p.strip() for p in self._env.get(name, default).split(",") if p.strip())

    def keepalive(self) -> KeepalivePolicy:
        """The one keepalive policy (myko/keepalive.py); set the same values on every service."""
        return KeepalivePolicy(
            time_ms=self.int("MYKO_KEEPALIVE_TIME_MS", DEFAULT_TIME_MS, minimum=100),
            timeout_ms=self.int("MYKO_KEEPALIVE_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, minimum=100),
        )


# Signature algorithms a token may use: asymmetric only, never `none` or HS*
# (a shared secret would let every service that verifies also mint tokens).
TOKEN_ALGORITHMS = ("RS256", "ES256", "PS256", "EdDSA")
MAX_LEEWAY_S = 120
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """How callers are authenticated (docs/security.md): OIDC bearer tokens, or off.

    On when MYKO_OIDC_ISSUER is set; off only with the explicit
    MYKO_AUTH_DISABLED=true. A service given neither refuses to start.
    """

    disabled: bool = False
    # The issuer's URL exactly as its tokens' `iss` says; discovery is <issuer>/.well-known/openid-configuration.
    issuer: str = ""
    # What a token's `aud` must contain: this deployment's API.
    audience: str = ""
    # Clock skew tolerated on exp/nbf/iat at verification (streams still end at exp).
    leeway_s: int = 30
    # Claim names (dotted paths reach nested claims, e.g. realm_access.roles).
    roles_claim: str = "roles"
    tenant_claim: str = "tenant"
    algorithms: tuple[str, ...] = TOKEN_ALGORITHMS
    # How often open streams re-check their token's expiry and revocations.
    recheck_ms: int = 1000
    # An unknown signing key (`kid`) refetches the JWKS at most this often (key rotation).
    jwks_refresh_min_s: int = 10
    # Known keys are refetched when older than this (a key the issuer dropped stops working).
    jwks_max_age_s: int = 300
    # Verified tokens remembered until they expire (so a check costs a dictionary lookup).
    token_cache_size: int = 10_000
    # Optional CA bundle (PEM) for reaching an https issuer signed by a private CA.
    ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return not self.disabled

    @classmethod
    def off(cls) -> AuthSettings:
        """Auth switched off: every call is anonymous (tests, and settings built in code)."""
        return cls(disabled=True)

    @classmethod
    def from_env(cls, e: _Env) -> AuthSettings:
        disabled = e.flag("MYKO_AUTH_DISABLED")
        issuer = e.opt_str("MYKO_OIDC_ISSUER")
        if disabled and issuer:
            raise ConfigError("MYKO_OIDC_ISSUER and MYKO_AUTH_DISABLED=true are both set: choose one")
        if disabled:
            return cls.off()
        if not issuer:
            raise ConfigError(
                "MYKO_OIDC_ISSUER is not set: name your OIDC issuer (and MYKO_OIDC_AUDIENCE), "
                "or run without authentication with MYKO_AUTH_DISABLED=true (docs/security.md)"
            )
        url = urlsplit(issuer)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise ConfigError(f"MYKO_OIDC_ISSUER={issuer!r} must be an http(s) URL")
        # Read whatever the scheme, so a stack may set it for both its plain and its TLS variant.
        allow_http = e.flag("MYKO_OIDC_ALLOW_HTTP")
        if url.scheme == "http" and url.hostname not in _LOOPBACK and not allow_http:
            raise ConfigError(
                f"MYKO_OIDC_ISSUER={issuer!r}: keys fetched over plain http can be forged on the way; "
                "use https, or set MYKO_OIDC_ALLOW_HTTP=true on a network you trust"
            )
        algorithms = tuple(e.list("MYKO_OIDC_ALGORITHMS", ",".join(TOKEN_ALGORITHMS)))
        for alg in algorithms:
            if alg not in TOKEN_ALGORITHMS:
                raise ConfigError(
                    f"MYKO_OIDC_ALGORITHMS entry {alg!r} is not one of {', '.join(TOKEN_ALGORITHMS)}"
                )
        if not algorithms:
            raise ConfigError("MYKO_OIDC_ALGORITHMS must name at least one algorithm")
        return cls(
            issuer=issuer,
            audience=e.required("MYKO_OIDC_AUDIENCE", "name the audience your issuer puts in Myko's tokens"),
            leeway_s=e.int("MYKO_OIDC_LEEWAY_S", cls.leeway_s, minimum=0, maximum=MAX_LEEWAY_S),
            roles_claim=e.str("MYKO_OIDC_ROLES_CLAIM", cls.roles_claim),
            tenant_claim=e.str("MYKO_OIDC_TENANT_CLAIM", cls.tenant_claim),
            algorithms=algorithms,
            recheck_ms=e.int("MYKO_AUTH_RECHECK_MS", cls.recheck_ms, minimum=50, maximum=1000),
            jwks_refresh_min_s=e.int("MYKO_OIDC_JWKS_REFRESH_MIN_S", cls.jwks_refresh_min_s, minimum=1),
            jwks_max_age_s=e.int("MYKO_OIDC_JWKS_MAX_AGE_S", cls.jwks_max_age_s, minimum=10),
            token_cache_size=e.int("MYKO_OIDC_TOKEN_CACHE_SIZE", cls.token_cache_size, minimum=1),
            ca_file=e.opt_str("MYKO_OIDC_CA_FILE"),
        )


@dataclass(frozen=True, kw_only=True)
class ClientCredentials:
    """A service's own identity at the issuer (OAuth client credentials), e.g. saga_svc's."""

    client_id: str
    client_secret: str
    # Space-separated scopes to ask for; empty asks for the client's defaults.
    scope: str = ""

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret=***, scope={self.scope!r})"


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:9092"
    # Prefixed to every topic name: lets tests and tenants share one cluster.
    topic_prefix: str = ""
    topic_partitions: int = 3
    topic_replication_factor: int = 1
    topic_min_insync_replicas: int = 1
    request_timeout_ms: int = 30_000
    # How often readers check that their topics are still the ones they read
    # (not deleted, recreated, truncated or repartitioned).
    topic_check_interval_ms: int = 5_000
    # How long an offset that looks rewritten (a partition ending below what was
    # read, or starting past it) must stay so before a reader stops. After a
    # broker fails, the new leader's high watermark can lag what readers already
    # read until its followers catch up or leave the ISR (Kafka's
    # replica.lag.time.max.ms, 30 s by default); a changed topic id or partition
    # count is proof and stops it at once.
    topic_suspect_hold_ms: int = 60_000
    # Largest CommandResult (a command's answer, also stored whole in the tx log).
    # Every service creates Myko's topics to accept records this large (plus
    # RECORD_OVERHEAD_BYTES), so all of them read it.
    max_result_bytes: int = 4 * 1024 * 1024
    # How this service authenticates to the brokers (docs/security.md, "Kafka"):
    # PLAINTEXT (no authentication: local `make run` only), SASL_PLAINTEXT or SASL_SSL.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    # This service's own Kafka principal (User:<username>); each service has its own.
    username: str = ""
    password: str = field(default="", repr=False)
    # SASL_SSL: the CA (PEM file) that signed the brokers' certificates; empty = the system's.
    ssl_ca_file: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        servers = e.str("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers)
        for s in servers.split(","):
            host, sep, port = s.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS entry {s!r} must be HOST:PORT")
        protocol = e.str("MYKO_KAFKA_SECURITY_PROTOCOL", cls.security_protocol).upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"MYKO_KAFKA_SECURITY_PROTOCOL={protocol!r} must be one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        mechanism = e.str("MYKO_KAFKA_SASL_MECHANISM", cls.sasl_mechanism).upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConfigError(
                f"MYKO_KAFKA_SASL_MECHANISM={mechanism!r} must be one of {', '.join(SASL_MECHANISMS)}"
            )
        username = e.opt_str("MYKO_KAFKA_USERNAME")
        # Not stripped: a password is what it is (a *_FILE secret loses its final newline only).
        password = (os.environ if env is None else env).get("MYKO_KAFKA_PASSWORD", "")
        if protocol.startswith("SASL_") and not (username and password):
            raise ConfigError(
                f"MYKO_KAFKA_SECURITY_PROTOCOL={protocol} needs MYKO_KAFKA_USERNAME and MYKO_KAFKA_PASSWORD "
                "(or MYKO_KAFKA_PASSWORD_FILE in the container)"
            )
        if not protocol.startswith("SASL_") and (username or password):
            raise ConfigError(
                "MYKO_KAFKA_USERNAME/MYKO_KAFKA_PASSWORD are set but MYKO_KAFKA_SECURITY_PROTOCOL is "
                f"{protocol}: set it to SASL_PLAINTEXT or SASL_SSL, or drop the credentials"
            )
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
            topic_check_interval_ms=e.int(
                "MYKO_TOPIC_CHECK_INTERVAL_MS", cls.topic_check_interval_ms, minimum=100, maximum=3_600_000
            ),
            topic_suspect_hold_ms=e.int(
                "MYKO_TOPIC_SUSPECT_HOLD_MS", cls.topic_suspect_hold_ms, minimum=0, maximum=3_600_000
            ),
            max_result_bytes=e.int("MYKO_MAX_RESULT_BYTES", cls.max_result_bytes, minimum=64 * 1024),
            security_protocol=protocol,
            sasl_mechanism=mechanism,
            username=username,
            password=password,
            ssl_ca_file=e.opt_str("MYKO_KAFKA_SSL_CA"),
        )

    def client_args(self) -> dict[str, Any]:
        """Connection and authentication arguments of every aiokafka client Myko opens."""
        args: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            args |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password,
            }
        if self.security_protocol == "SASL_SSL":
            args["ssl_context"] = ssl.create_default_context(cafile=self.ssl_ca_file or None)
        return args


SECURITY_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


@dataclass(frozen=True, kw_only=True)
class TlsSettings:
    """Transport security of gRPC and the gateway (myko/tls.py; docs/security.md, "Transport").

    All three files or none. With them, internal listeners (RepoService,
    command_svc's internal port) take only callers with a certificate from
    `ca_file`, and internal calls present `cert_file`. `public` puts TLS
    (server certificate only: callers authenticate with tokens) on the public
    gRPC listeners and the gateway's HTTP too.
    """

    cert_file: str = ""
    key_file: str = ""
    ca_file: str = ""
    public: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        files = {name: e.opt_str(name) for name in ("MYKO_TLS_CERT", "MYKO_TLS_KEY", "MYKO_TLS_CA")}
        missing = [name for name, value in files.items() if not value]
        if missing and len(missing) < len(files):
            raise ConfigError(
                f"MYKO_TLS_CERT, MYKO_TLS_KEY and MYKO_TLS_CA go together; {', '.join(missing)} not set"
            )
        public = e.flag("MYKO_TLS_PUBLIC")
        if public and missing:
            raise ConfigError("MYKO_TLS_PUBLIC=true needs MYKO_TLS_CERT, MYKO_TLS_KEY and MYKO_TLS_CA")
        return cls(
            cert_file=files["MYKO_TLS_CERT"],
            key_file=files["MYKO_TLS_KEY"],
            ca_file=files["MYKO_TLS_CA"],
            public=public,
        )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
TRACE_EXPORTERS = ("otlp", "console", "none")
TRACE_SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)
OTLP_PROTOCOLS = ("grpc",)


def _log_level(e: _Env, service: str) -> str:
    """MYKO_<SERVICE>_LOG_LEVEL, else MYKO_LOG_LEVEL: one environment can serve every service."""
    own = f"MYKO_{service.upper()}_LOG_LEVEL"
    name = own if e.opt_str(own) else "MYKO_LOG_LEVEL"
    level = e.str(name, "INFO").upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{name}={level!r} must be DEBUG, INFO, WARNING or ERROR")
    return level


def _log_format(e: _Env) -> str:
    fmt = e.str("MYKO_LOG_FORMAT", "text").lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"MYKO_LOG_FORMAT={fmt!r} must be text or json")
    return fmt


@dataclass(frozen=True, kw_only=True)
class TracingSettings:
    """OpenTelemetry tracing, from the standard OTEL_* variables (docs/observability.md).

    Only what Myko decides on is read here (and checked at start); the OTLP
    exporter reads its own remaining OTEL_EXPORTER_OTLP_* variables (headers,
    certificates, timeout, compression) and the SDK OTEL_RESOURCE_ATTRIBUTES
    and OTEL_BSP_*, as every OpenTelemetry SDK does.
    """

    # OTEL_SDK_DISABLED=true: no spans at all (the incoming trace context is not passed on).
    enabled: bool = True
    # OTEL_TRACES_EXPORTER, comma-separated. Unset: "otlp" when an OTLP endpoint is
    # set, else "none" (spans are made, so logs carry trace ids, but go nowhere).
    exporters: tuple[str, ...] = ("none",)
    otlp_endpoint: str = "http://localhost:4317"
    # Parent-based, so a caller's decision wins; traces started here are kept 1 in 10,
    # because tracing every command cost 9-10 % of the p50 on a 2-core machine
    # (docs/observability.md, "Why these defaults").
    sampler: str = "parentbased_traceidratio"
    # OTEL_TRACES_SAMPLER_ARG: the ratio of the *traceidratio samplers (the
    # OpenTelemetry default, 1.0, when OTEL_TRACES_SAMPLER is set without it).
    sampler_arg: float = 0.1
    # OTEL_SERVICE_NAME; empty: the service's own name (command_svc, gateway, ...).
    service_name: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        disabled = e.opt_str("OTEL_SDK_DISABLED").lower()
        if disabled not in ("", "true", "false"):
            raise ConfigError(f"OTEL_SDK_DISABLED={disabled!r} must be true or false")
        endpoint_var = next(
            (
                v
                for v in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
                if e.opt_str(v)
            ),
            None,
        )
        endpoint = e.opt_str(endpoint_var) if endpoint_var else cls.otlp_endpoint
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"{endpoint_var}={endpoint!r} must start with http:// or https://")
        default_exporter = "otlp" if endpoint_var else "none"
        exporters = tuple(x.lower() for x in e.list("OTEL_TRACES_EXPORTER")) or (default_exporter,)
        for x in exporters:
            if x not in TRACE_EXPORTERS:
                raise ConfigError(f"OTEL_TRACES_EXPORTER entry {x!r} must be otlp, console or none")
        if "none" in exporters and len(exporters) > 1:
            raise ConfigError("OTEL_TRACES_EXPORTER: none cannot be combined with other exporters")
        for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = e.opt_str(var)
            if protocol:
                if protocol not in OTLP_PROTOCOLS:
                    raise ConfigError(f"{var}={protocol!r}: Myko exports OTLP over grpc (port 4317) only")
                break
        sampler = e.str("OTEL_TRACES_SAMPLER", cls.sampler).lower()
        if sampler not in TRACE_SAMPLERS:
            raise ConfigError(f"OTEL_TRACES_SAMPLER={sampler!r} must be one of {', '.join(TRACE_SAMPLERS)}")
        raw_arg = e.opt_str("OTEL_TRACES_SAMPLER_ARG")
        arg = cls.sampler_arg if not e.opt_str("OTEL_TRACES_SAMPLER") else 1.0
        if raw_arg and sampler.endswith("traceidratio"):
            try:
                arg = float(raw_arg)
            except ValueError:
                raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={raw_arg!r} is not a number") from None
            if not 0.0 <= arg <= 1.0:
                raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG={arg} must be between 0 and 1")
        return cls(
            enabled=disabled != "true",
            exporters=exporters,
            otlp_endpoint=endpoint,
            sampler=sampler,
            sampler_arg=arg,
            service_name=e.opt_str("OTEL_SERVICE_NAME"),
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
    # Open server streams per process (Watch, Subscribe); more get RESOURCE_EXHAUSTED.
    # Also how many new calls gRPC may queue before the process picks them up.
    max_streams: int = 10_000
    keepalive: KeepalivePolicy = field(default_factory=KeepalivePolicy)
    log_level: str = "INFO"
    tls: TlsSettings = field(default_factory=TlsSettings)
    # MYKO_LOG_FORMAT: "text" (for people) or "json" (one object a line, for collectors).
    log_format: str = "text"
    tracing: TracingSettings = field(default_factory=TracingSettings)
    # Prometheus metrics on http://host:metrics_port/metrics; 0 serves none (they are
    # still kept). The entry point serves them (myko/runner.py), not the service object.
    metrics_port: int = 0
    # How often this instance writes its myko.v1.ServiceStatus (the UI's System page);
    # 0 writes none (docs/observability.md). query_svc and report_svc hand theirs to repo_svc.
    status_interval_ms: int = 10_000
    # Entities kept decoded per entity type by the in-memory store, besides the
    # stored bytes of every entity (myko/repo.py): the most recently read by id.
    # ~1-2 KB of RSS each; 0 decodes on every read.
    repo_cache_entities: int = 1024

    @classmethod
    def _common(cls, service: str, env: Mapping[str, str] | None) -> dict[str, object]:
        src = os.environ if env is None else env
        e = _Env(src)
        spec = catalogue.service(service)
        return {
            "service": service,
            "host": e.str("MYKO_HOST", "127.0.0.1"),
            "port": e.port(spec.port_env, spec.port),
            "app_module": e.required("MYKO_APP", "name the module exposing your `app: myko.App`"),
            "instance_id": e.opt_str("MYKO_INSTANCE_ID") or f"{service}-{socket.gethostname()}",
            "max_message_bytes": e.int("MYKO_MAX_MESSAGE_BYTES", 8 * 1024 * 1024, minimum=1024),
            "max_streams": e.int("MYKO_MAX_STREAMS", 10_000, minimum=1),
            "keepalive": e.keepalive(),
            "log_level": _log_level(e, service),
            "log_format": _log_format(e),
            "tracing": TracingSettings.from_env(src),
            "tls": TlsSettings.from_env(src),
            "metrics_port": e.int("MYKO_METRICS_PORT", spec.metrics_port, minimum=0, maximum=65535),
            "status_interval_ms": _interval(e, "MYKO_STATUS_INTERVAL_MS", 10_000),
            "repo_cache_entities": e.int("MYKO_REPO_CACHE_ENTITIES", 1024, minimum=0, maximum=1_000_000),
        }

    @property
    def listen(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, kw_only=True)
class CheckpointSettings:
    """Checkpoints of a service's store (docs/checkpoints.md): repo_svc, command_svc and saga_svc."""

    # A directory (each replica uses the subdirectory named by its instance id);
    # empty: none, every start replays the topics.
    dir: str = ""
    # Written after this many applied records, or this often when anything was applied.
    every_records: int = 500_000
    interval_ms: int = 600_000

    @classmethod
    def from_env(cls, e: _Env) -> CheckpointSettings:
        return cls(
            dir=e.opt_str("MYKO_CHECKPOINT_DIR"),
            every_records=e.int("MYKO_CHECKPOINT_EVERY_RECORDS", cls.every_records, minimum=1),
            interval_ms=e.int("MYKO_CHECKPOINT_INTERVAL_MS", cls.interval_ms, minimum=1000),
        )


@dataclass(frozen=True, kw_only=True)
class KafkaServiceSettings(ServerSettings):
    """command_svc, repo_svc and saga_svc: the services that talk to Kafka (each as its own principal)."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    # Topic name before the prefix; records that cannot be decoded are copied
    # there with their coordinates and the reason (docs/quarantine.md).
    quarantine_topic: str = "myko.quarantine"
    # Log lines per second about such records, on average (bursts of 10 s worth).
    bad_record_log_per_s: int = 5

    @classmethod
    def _common(cls, service: str, env: Mapping[str, str] | None) -> dict[str, object]:
        src = os.environ if env is None else env
        e = _Env(src)
        return {
            **super()._common(service, env),
            "kafka": KafkaSettings.from_env(src),
            "quarantine_topic": e.str("MYKO_QUARANTINE_TOPIC", "myko.quarantine"),
            "bad_record_log_per_s": e.int("MYKO_BAD_RECORD_LOG_PER_S", 5, minimum=1),
        }


@dataclass(frozen=True, kw_only=True)
class CommandSettings(KafkaServiceSettings):
    # Largest Any payload a command may carry; larger gets RESOURCE_EXHAUSTED.
    max_command_bytes: int = 512 * 1024
    # The dedupe window (docs/consistency.md): a retried tx takes effect once when it
    # was committed within the last tx_dedupe_window_ms AND among the last
    # tx_dedupe_max_txs commands. The count bounds memory (~200 B per tx) and
    # start-up time; the age is also the tx-log topic's retention.
    tx_dedupe_window_ms: int = 7 * 24 * 3600 * 1000
    tx_dedupe_max_txs: int = 100_000
    # Recent results kept in memory; older retries read theirs back from Kafka.
    tx_result_cache_bytes: int = 16 * 1024 * 1024
    # Re-runs of a handler whose reads went stale before it could commit.
    conflict_retries: int = 8
    # ExecuteBatch (docs/batches.md): most commands in one call (more is
    # RESOURCE_EXHAUSTED, not retriable), most batched commands in flight at once
    # across every caller (more is RESOURCE_EXHAUSTED, retriable), and most bytes
    # of results in one answer (a result past it is answered "took effect, ask
    # for it alone": a default gRPC client receives up to 4 MiB).
    max_batch_commands: int = 1000
    max_batch_in_flight: int = 10_000
    max_batch_result_bytes: int = 4 * 1024 * 1024 - 64 * 1024
    # Where other replicas reach this one when it leads (HOST:PORT); empty means
    # this host's name (or MYKO_HOST when it is a specific address) and the bound
    # port: the internal port when TLS is on, else the public one.
    advertise_addr: str = ""
    # With TLS: the listener for other command replicas and saga_svc (client
    # certificates required); not opened without TLS.
    internal_port: int = catalogue.COMMAND_INTERNAL_PORT
    auth: AuthSettings = field(default_factory=AuthSettings.off)
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        if e.opt_str("MYKO_TX_RETENTION_MS"):
            raise ConfigError(
                "MYKO_TX_RETENTION_MS was replaced by MYKO_TX_DEDUPE_WINDOW_MS (and MYKO_TX_DEDUPE_MAX_TXS)"
            )
        return cls(
            **cls._common("command", env),  # type: ignore[arg-type]
            max_command_bytes=e.int("MYKO_MAX_COMMAND_BYTES", 512 * 1024, minimum=1024),
            tx_dedupe_window_ms=e.int("MYKO_TX_DEDUPE_WINDOW_MS", 7 * 24 * 3600 * 1000, minimum=60_000),
            tx_dedupe_max_txs=e.int("MYKO_TX_DEDUPE_MAX_TXS", 100_000, minimum=1),
            tx_result_cache_bytes=e.int("MYKO_TX_RESULT_CACHE_BYTES", 16 * 1024 * 1024, minimum=0),
            conflict_retries=e.int("MYKO_CONFLICT_RETRIES", 8, minimum=0),
            max_batch_commands=e.int("MYKO_MAX_BATCH_COMMANDS", 1000, minimum=1),
            max_batch_in_flight=e.int("MYKO_MAX_BATCH_IN_FLIGHT", 10_000, minimum=1),
            max_batch_result_bytes=e.int(
                "MYKO_MAX_BATCH_RESULT_BYTES", 4 * 1024 * 1024 - 64 * 1024, minimum=1024
            ),
            advertise_addr=e.addr("MYKO_ADVERTISE_ADDR", "_:0") if e.opt_str("MYKO_ADVERTISE_ADDR") else "",
            internal_port=e.port(catalogue.COMMAND.internal_port_env, catalogue.COMMAND_INTERNAL_PORT),
            auth=AuthSettings.from_env(e),
            checkpoints=CheckpointSettings.from_env(e),
        )

    @property
    def internal_listen(self) -> str:
        return f"{self.host}:{self.internal_port}"


@dataclass(frozen=True, kw_only=True)
class RepoSettings(KafkaServiceSettings):
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        return cls(
            **cls._common("repo", env),  # type: ignore[arg-type]
            checkpoints=CheckpointSettings.from_env(e),
        )


@dataclass(frozen=True, kw_only=True)
class LiveSettings(ServerSettings):
    """query_svc and report_svc: live buses over a mirror of repo_svc. No Kafka access at all."""

    SERVICE: ClassVar[str]
    repo_addr: str = catalogue.REPO.default_addr
    # The deployment's MYKO_TOPIC_PREFIX: watermarks name topics with it.
    topic_prefix: str = ""
    auth: AuthSettings = field(default_factory=AuthSettings.off)
    # LiveBus/Open streams (myko/live_streams.py), the gateway's limits' counterparts:
    # subscriptions per stream, in the whole process (besides the MYKO_MAX_STREAMS
    # streams), bytes waiting per stream, and the idle heartbeat.
    max_subscriptions_per_stream: int = 256
    max_live_subscriptions: int = 50_000
    max_stream_unsent_bytes: int = 64 * 1024 * 1024
    live_heartbeat_ms: int = 10_000
    # After a result at least this large, give the C heap's free pages back (myko/heap_trim.py); 0: never.
    heap_trim_threshold_bytes: int = 4 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        return cls(
            **cls._common(cls.SERVICE, env),  # type: ignore[arg-type]
            repo_addr=e.addr("MYKO_REPO_ADDR", catalogue.REPO.default_addr),
            topic_prefix=e.opt_str("MYKO_TOPIC_PREFIX"),
            auth=AuthSettings.from_env(e),
            max_subscriptions_per_stream=e.int(
                "MYKO_MAX_SUBSCRIPTIONS_PER_STREAM", cls.max_subscriptions_per_stream, minimum=1
            ),
            max_live_subscriptions=e.int(
                "MYKO_MAX_LIVE_SUBSCRIPTIONS", cls.max_live_subscriptions, minimum=1
            ),
            max_stream_unsent_bytes=e.int(
                "MYKO_MAX_STREAM_UNSENT_BYTES", cls.max_stream_unsent_bytes, minimum=64 * 1024
            ),
            live_heartbeat_ms=e.int("MYKO_LIVE_HEARTBEAT_MS", cls.live_heartbeat_ms, minimum=100),
            heap_trim_threshold_bytes=e.int(
                "MYKO_HEAP_TRIM_THRESHOLD_BYTES", cls.heap_trim_threshold_bytes, minimum=0
            ),
        )


@dataclass(frozen=True, kw_only=True)
class QuerySettings(LiveSettings):
    SERVICE = "query"


@dataclass(frozen=True, kw_only=True)
class ReportSettings(LiveSettings):
    SERVICE = "report"


@dataclass(frozen=True, kw_only=True)
class SagaSettings(KafkaServiceSettings):
    # command_svc's internal port when TLS is on (client certificates), else its public one.
    command_addr: str = catalogue.COMMAND.default_addr
    group_id: str = catalogue.SAGA_GROUP_ID
    max_attempts: int = 5
    backoff_initial_ms: int = 200
    backoff_max_ms: int = 10_000
    # Topic name before the prefix; events that kept failing land here with the reason.
    dead_letter_topic: str = "myko.dead-letter"
    # Fault injection for tests, never for production: SIGKILL this process right
    # after a saga's commands are acknowledged and before the offset is committed.
    test_crash_after_execute: bool = False
    # The issuer sagas get their tokens from (its token endpoint), and the audience to ask for.
    auth: AuthSettings = field(default_factory=AuthSettings.off)
    # saga_svc's own client at the issuer; required when auth is on.
    credentials: ClientCredentials | None = None
    checkpoints: CheckpointSettings = field(default_factory=CheckpointSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        e = _Env(os.environ if env is None else env)
        common = cls._common("saga", env)
        auth = AuthSettings.from_env(e)
        credentials = None
        if auth.enabled:
            hint = "saga_svc's client at the issuer (client credentials), needed when auth is on"
            credentials = ClientCredentials(
                client_id=e.required("MYKO_SAGA_CLIENT_ID", hint),
                client_secret=e.required("MYKO_SAGA_CLIENT_SECRET", hint),
                scope=e.opt_str("MYKO_SAGA_TOKEN_SCOPE"),
            )
        return cls(
            **common,  # type: ignore[arg-type]
            auth=auth,
            credentials=credentials,
            command_addr=e.addr("MYKO_COMMAND_ADDR", catalogue.COMMAND.default_addr),
            group_id=e.str("MYKO_SAGA_GROUP_ID", catalogue.SAGA_GROUP_ID),
            max_attempts=e.int("MYKO_SAGA_MAX_ATTEMPTS", 5, minimum=1),
            backoff_initial_ms=e.int("MYKO_SAGA_BACKOFF_INITIAL_MS", 200, minimum=1),
            backoff_max_ms=e.int("MYKO_SAGA_BACKOFF_MAX_MS", 10_000, minimum=1),
            dead_letter_topic=e.str("MYKO_DEAD_LETTER_TOPIC", "myko.dead-letter"),
            test_crash_after_execute=e.int("MYKO_SAGA_TEST_CRASH_AFTER_EXECUTE", 0, maximum=1) == 1,
            checkpoints=CheckpointSettings.from_env(e),
        )


@dataclass(frozen=True, kw_only=True)
class KafkaAccessSettings:
    """`myko kafka-access`: each Kafka-using service's user and ACLs (myko/kafka_access.py).

    `kafka` holds an administrator's credentials (a super user of the cluster);
    the names below must match what the services are configured with.
    """

    kafka: KafkaSettings
    app_module: str
    quarantine_topic: str = "myko.quarantine"
    dead_letter_topic: str = "myko.dead-letter"
    saga_group_id: str = catalogue.SAGA_GROUP_ID
    # The Kafka principals (User:<name>) of the three services that use Kafka.
    command_user: str = "command"
    repo_user: str = "repo"
    saga_user: str = "saga"
    # User -> the SCRAM password to set; users without one are left as they are.
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        src = os.environ if env is None else env
        e = _Env(src)
        users = {
            service: e.str(f"MYKO_KAFKA_{service.upper()}_USER", service)
            for service in ("command", "repo", "saga")
        }
        passwords = {
            users[service]: src[f"MYKO_KAFKA_{service.upper()}_PASSWORD"]
            for service in users
            if src.get(f"MYKO_KAFKA_{service.upper()}_PASSWORD", "")
        }
        return cls(
            kafka=KafkaSettings.from_env(src),
            app_module=e.required("MYKO_APP", "name the module exposing your `app: myko.App`"),
            quarantine_topic=e.str("MYKO_QUARANTINE_TOPIC", cls.quarantine_topic),
            dead_letter_topic=e.str("MYKO_DEAD_LETTER_TOPIC", cls.dead_letter_topic),
            saga_group_id=e.str("MYKO_SAGA_GROUP_ID", cls.saga_group_id),
            command_user=users["command"],
            repo_user=users["repo"],
            saga_user=users["saga"],
            passwords=passwords,
        )


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    """The grpc-web gateway: where it listens, where the public buses are, what it serves."""

    host: str = "127.0.0.1"
    port: int = catalogue.GATEWAY.port
    command_addr: str = catalogue.COMMAND.default_addr
    query_addr: str = catalogue.QUERY.default_addr
    report_addr: str = catalogue.REPORT.default_addr
    # Origins allowed to call from another origin; "*" allows any. Empty: same origin only.
    cors_origins: tuple[str, ...] = ()
    # The built UI (vite build output); missing means API only.
    ui_dist: str = "ui/dist"
    # Idle LiveBus sessions get a heartbeat this often so dead connections are noticed.
    live_heartbeat_ms: int = 10_000
    # Keepalive of the channels to the buses (myko/keepalive.py).
    keepalive: KeepalivePolicy = field(default_factory=KeepalivePolicy)
    log_level: str = "INFO"
    # With `tls.public`: HTTPS with tls.cert_file, and TLS to the buses verified against tls.ca_file.
    tls: TlsSettings = field(default_factory=TlsSettings)
    log_format: str = "text"
    tracing: TracingSettings = field(default_factory=TracingSettings)
    # Optional: the application module (MYKO_APP). Imported only so its message types
    # are known, which lets LiveBus drop unknown fields from query/report payloads
    # before sharing feeds; without it payloads are compared as sent.
    app_module: str = ""
    # Request headers passed upstream on proxied calls (tracing and the like); every
    # other header stays at the gateway. Not passed on shared LiveBus feeds.
    pass_headers: tuple[str, ...] = ("x-request-id", "traceparent", "tracestate")
    # Headers that may change a result (e.g. authorization): passed on every call, and
    # LiveBus feeds are shared only between subscriptions with equal values.
    scope_headers: tuple[str, ...] = ()
    # GET /metrics (Prometheus) on the gateway's own port; off when the port is public
    # and nothing in front of it keeps /metrics private.
    metrics: bool = True
    # Docs: docs/errors.md "Gateway limits". Largest request message (one grpc-web frame).
    max_message_bytes: int = 4 * 1024 * 1024
    # Streams = LiveBus Open streams plus proxied Watch streams.
    max_streams: int = 2_000
    max_streams_per_client: int = 128
    max_subscriptions_per_stream: int = 256
    max_subscriptions_per_client: int = 4_096
    max_subscriptions: int = 50_000
    # Distinct upstream Watch streams held for LiveBus (shared by equal subscriptions).
    max_feeds: int = 5_000
    # Result bytes one LiveBus stream may have waiting to be sent (shared results counted per stream).
    max_stream_unsent_bytes: int = 64 * 1024 * 1024
    # Result and request bytes the whole process may hold; above it new requests are refused.
    max_buffered_bytes: int = 256 * 1024 * 1024
    # A response write that makes no progress for this long drops the connection.
    stall_timeout_ms: int = 30_000
    # Tokens are verified here too (no data for a bad one) and LiveBus sessions end at expiry.
    auth: AuthSettings = field(default_factory=AuthSettings.off)
    # How the UI it serves signs in at the issuer (GET /myko-auth.json): its public client's id and scopes.
    ui_client_id: str = "myko-ui"
    ui_scope: str = "openid profile"

    @property
    def max_request_body_bytes(self) -> int:
        """A body may carry one message frame, base64 (4/3) and line breaks: twice the message, plus slack."""
        return 2 * self.max_message_bytes + 64 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        src = os.environ if env is None else env
        e = _Env(src)
        origins = [str(o) for o in e.list("MYKO_GATEWAY_CORS_ORIGINS")]
        for o in origins:
            if o != "*" and not o.startswith(("http://", "https://")):
                raise ConfigError(f"MYKO_GATEWAY_CORS_ORIGINS entry {o!r} must be * or start with http(s)://")
        return cls(
            host=e.str("MYKO_HOST", "127.0.0.1"),
            port=e.port(catalogue.GATEWAY.port_env, catalogue.GATEWAY.port),
            command_addr=e.addr("MYKO_COMMAND_ADDR", catalogue.COMMAND.default_addr),
            query_addr=e.addr("MYKO_QUERY_ADDR", catalogue.QUERY.default_addr),
            report_addr=e.addr("MYKO_REPORT_ADDR", catalogue.REPORT.default_addr),
            cors_origins=tuple(o.rstrip("/") for o in origins),
            ui_dist=e.str("MYKO_UI_DIST", "ui/dist"),
            live_heartbeat_ms=e.int("MYKO_GATEWAY_LIVE_HEARTBEAT_MS", 10_000, minimum=100),
            keepalive=e.keepalive(),
            log_level=_log_level(e, catalogue.GATEWAY.name),
            log_format=_log_format(e),
            tracing=TracingSettings.from_env(src),
            tls=TlsSettings.from_env(src),
            app_module=e.opt_str("MYKO_APP"),
            pass_headers=_header_names(e, "MYKO_GATEWAY_PASS_HEADERS", ",".join(cls.pass_headers)),
            scope_headers=_header_names(e, "MYKO_GATEWAY_SCOPE_HEADERS", ""),
            metrics=e.int("MYKO_GATEWAY_METRICS", 1, maximum=1) == 1,
            max_message_bytes=e.int("MYKO_GATEWAY_MAX_MESSAGE_BYTES", cls.max_message_bytes, minimum=1024),
            max_streams=e.int("MYKO_GATEWAY_MAX_STREAMS", cls.max_streams, minimum=1),
            max_streams_per_client=e.int(
                "MYKO_GATEWAY_MAX_STREAMS_PER_CLIENT", cls.max_streams_per_client, minimum=1
            ),
            max_subscriptions_per_stream=e.int(
                "MYKO_GATEWAY_MAX_SUBSCRIPTIONS_PER_STREAM", cls.max_subscriptions_per_stream, minimum=1
            ),
            max_subscriptions_per_client=e.int(
                "MYKO_GATEWAY_MAX_SUBSCRIPTIONS_PER_CLIENT", cls.max_subscriptions_per_client, minimum=1
            ),
            max_subscriptions=e.int("MYKO_GATEWAY_MAX_SUBSCRIPTIONS", cls.max_subscriptions, minimum=1),
            max_feeds=e.int("MYKO_GATEWAY_MAX_FEEDS", cls.max_feeds, minimum=1),
            max_stream_unsent_bytes=e.int(
                "MYKO_GATEWAY_MAX_STREAM_UNSENT_BYTES", cls.max_stream_unsent_bytes, minimum=64 * 1024
            ),
            max_buffered_bytes=e.int(
                "MYKO_GATEWAY_MAX_BUFFERED_BYTES", cls.max_buffered_bytes, minimum=1024 * 1024
            ),
            stall_timeout_ms=e.int("MYKO_GATEWAY_STALL_TIMEOUT_MS", cls.stall_timeout_ms, minimum=100),
            auth=AuthSettings.from_env(e),
            ui_client_id=e.str("MYKO_UI_CLIENT_ID", cls.ui_client_id),
            ui_scope=e.str("MYKO_UI_SCOPE", cls.ui_scope),
        )


# Only the settings' namespaces: other *_FILE variables belong to someone else.
_FILE_PREFIXES = ("MYKO_", "KAFKA_")
_FILE_SUFFIX = "_FILE"


# Settings whose value is a path by name, read by the code itself: not indirections.
PATH_SETTINGS = frozenset({"MYKO_OIDC_CA_FILE"})


def resolve_file_vars(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with every `MYKO_*_FILE` / `KAFKA_*_FILE=/path` also providing the name without
    `_FILE`, read from the file (trailing newline dropped): how Swarm secrets and configs
    become settings (devtools/entrypoint.py, `myko kafka-access`)."""
    resolved = dict(env)
    for name, path in env.items():
        if not (name.endswith(_FILE_SUFFIX) and name.startswith(_FILE_PREFIXES)) or name in PATH_SETTINGS:
            continue
        target = name.removesuffix(_FILE_SUFFIX)
        if target in env:
            raise ConfigError(f"{target} and {name} are both set; set one")
        try:
            resolved[target] = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"{name}={path!r} cannot be read: {e.strerror}") from None
    return resolved


# What gRPC allows as a metadata key, less the headers HTTP/2 and gRPC reserve.
_HEADER_NAME = re.compile(r"^[0-9a-z_.\-]+$")
_RESERVED_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "content-type",
        "host",
        "keep-alive",
        "te",
        "transfer-encoding",
        "upgrade",
        "user-agent",
    }
)


def _interval(e: _Env, name: str, default: int) -> int:
    """Milliseconds, 0 for off; a positive value below a second would flood what it feeds."""
    value = e.int(name, default, minimum=0, maximum=3_600_000)
    if 0 < value < 1000:
        raise ConfigError(f"{name}={value} must be 0 (off) or at least 1000 ms")
    return value


def _header_names(e: _Env, name: str, default: str) -> tuple[str, ...]:
    names = tuple(h.lower() for h in e.list(name, default))
    for h in names:
        if not _HEADER_NAME.match(h) or h.startswith("grpc-") or h in _RESERVED_HEADERS:
            raise ConfigError(f"{name} entry {h!r} is not a header that can be passed as gRPC metadata")
    return names
