"""Kafka access: each Myko service its own principal (a SCRAM user), allowed only what it does.

    myko kafka-access          # users and ACLs (as an administrator: MYKO_KAFKA_* credentials)
    myko kafka-access --list   # print the ACLs instead

The users: with MYKO_KAFKA_<SERVICE>_PASSWORD (COMMAND, REPO, SAGA) set, that
service's SCRAM-SHA-512 credential is created or replaced
(AlterUserScramCredentials); a service whose password is not given is left as
it is (its user may be managed elsewhere). The cluster's own principals
(brokers, controllers, the administrator) are not SCRAM users: they are
defined in the brokers' configuration (`broker_sasl_properties`), so a fresh
cluster can authenticate its administrator before any user exists.

With `StandardAuthorizer` and no `allow.everyone.if.no.acl.found`, a
principal may do nothing it was not granted. The grants (docs/security.md,
"Kafka"), every topic name with MYKO_TOPIC_PREFIX:

- command: reads and writes the entity topics (and reads their configs: checkpoints), the tx log and the command
  lease; writes the quarantine topic; its lease group and its transactional
  id. The only writer of entity topics, tx log and lease.
- repo: reads the entity topics (and their configs: checkpoints); writes the quarantine topic.
- saga: reads the entity topics (and their configs: checkpoints), in its consumer
  groups (`<group id>.<saga>`) and for its store; writes the dead-letter topic.
- query, report, gateway: nothing (they have no Kafka credentials at all).

Each service may also CREATE the topics it creates at start (`ensure_topics`),
so a fresh cluster needs no other set-up. Topics are named one by one
(LITERAL), so a new entity type needs this run again before the services
that use it start: until then its topic is refused to them, loudly.

aiokafka has no ACL or SCRAM API; its protocol classes have CreateAcls, and
AlterUserScramCredentials is declared here from its protocol types; both are
sent over an admin client's connection (as myko/topic_identity.py does for
Metadata). Creating an ACL that exists is a no-op and an upsert replaces a
credential, so running this again is safe (and how passwords are rotated).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    CompactArray,
    CompactBytes,
    CompactString,
    Int8,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

from myko.app import load_app
from myko.errors import ConfigError, Unavailable
from myko.leader import LEASE_TOPIC
from myko.settings import KafkaAccessSettings, resolve_file_vars
from myko.topics import TX_LOG
from myko.v1 import system_pb2

log = logging.getLogger(__name__)


# Kafka's wire codes (org.apache.kafka.common.resource / acl).
class Resource(IntEnum):
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5


class Pattern(IntEnum):
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8
    DESCRIBE_CONFIGS = 10


_ALLOW = 3


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW binding: `principal` may do `operation` on the resource, from any host."""

    principal: str
    operation: Operation
    resource: Resource
    name: str
    pattern: Pattern = Pattern.LITERAL

    def __str__(self) -> str:
        match = "prefix " if self.pattern is Pattern.PREFIXED else ""
        return (
            f"{self.principal:<14} {self.operation.name:<9} {self.resource.name.lower()} {match}{self.name}"
        )


def _grant(principal: str, ops: Iterable[Operation], resource: Resource, names: Iterable[str]) -> list[Acl]:
    return [Acl(f"User:{principal}", op, resource, name) for name in names for op in ops]


def service_acls(settings: KafkaAccessSettings, entity_topics: Sequence[str]) -> list[Acl]:
    """Every grant the Kafka-using services need, for an application with these entity topics."""
    prefix = settings.kafka.topic_prefix
    tx_log, lease = prefix + TX_LOG, prefix + LEASE_TOPIC
    quarantine, dead_letter = prefix + settings.quarantine_topic, prefix + settings.dead_letter_topic
    R, W, C, D = Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DESCRIBE
    T = Resource.TOPIC
    status = prefix + str(system_pb2.ServiceStatus.DESCRIPTOR.full_name)
    command, repo, saga = settings.command_user, settings.repo_user, settings.saga_user
    acls = [
        *_grant(command, (D, C, R, W), T, [*entity_topics, tx_log, lease]),
        *_grant(command, (D, C, W), T, [quarantine]),
        # The lease is a consumer group; the writer is one shared transactional id.
        *_grant(command, (D, R), Resource.GROUP, [f"{prefix}myko-command"]),
        *_grant(command, (D, W), Resource.TRANSACTIONAL_ID, [f"myko-command-{prefix}leader"]),
        *_grant(repo, (D, C, R), T, entity_topics),
        # A checkpoint is trusted only while younger than the topics' delete.retention.ms.
        *_grant(repo, (Operation.DESCRIBE_CONFIGS,), T, entity_topics),
        *_grant(command, (Operation.DESCRIBE_CONFIGS,), T, entity_topics),
        *_grant(saga, (Operation.DESCRIBE_CONFIGS,), T, entity_topics),
        *_grant(repo, (D, C, W), T, [quarantine]),
        *_grant(saga, (D, C, R), T, entity_topics),
        *_grant(saga, (D, C, W), T, [dead_letter]),
        # Each instance's own myko.v1.ServiceStatus (myko/service_status.py), and repo the
        # statuses query and report hand it (myko/status_relay.py); command
        # writes every entity topic already.
        *_grant(repo, (W,), T, [status]),
        *_grant(saga, (W,), T, [status]),
    ]
    # One group per saga: `<prefix><group id>.<saga name>` (myko/saga.py).
    acls += [
        Acl(f"User:{saga}", op, Resource.GROUP, f"{prefix}{settings.saga_group_id}.", Pattern.PREFIXED)
        for op in (D, R)
    ]
    return sorted(set(acls))


# -- SCRAM users --------------------------------------------------------------------------------

SCRAM_MECHANISM = "SCRAM-SHA-512"
_SCRAM_SHA_512 = 2  # org.apache.kafka.clients.admin.ScramMechanism
# Kafka accepts 4096 to 16384 for SHA-512; every login pays for them on both sides.
SCRAM_ITERATIONS = 8192


class _AlterScramResponseV0(Response):  # type: ignore[misc]
    API_KEY = 51
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            CompactArray(
                ("user", CompactString("utf-8")),
                ("error_code", Int16),
                ("error_message", CompactString("utf-8")),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _AlterScramRequestV0(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 51
    API_VERSION = 0
    RESPONSE_TYPE = _AlterScramResponseV0
    SCHEMA = Schema(
        (
            "deletions",
            CompactArray(("name", CompactString("utf-8")), ("mechanism", Int8), ("tags", TaggedFields)),
        ),
        (
            "upsertions",
            CompactArray(
                ("name", CompactString("utf-8")),
                ("mechanism", Int8),
                ("iterations", Int32),
                ("salt", CompactBytes),
                ("salted_password", CompactBytes),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class _UpsertScram(Request[_AlterScramRequestV0]):  # type: ignore[misc]
    API_KEY = 51

    def __init__(self, passwords: Mapping[str, str]) -> None:
        self._passwords = passwords

    def build(self, request_struct_class: type[_AlterScramRequestV0]) -> _AlterScramRequestV0:
        upserts: list[tuple[str, int, int, bytes, bytes, dict[int, bytes]]] = []
        for user, password in sorted(self._passwords.items()):
            # The broker stores keys derived from this; the password itself never travels.
            salt = secrets.token_bytes(32)
            salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
            upserts.append((user, _SCRAM_SHA_512, SCRAM_ITERATIONS, salt, salted, {}))
        return request_struct_class([], upserts, {})


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    """All bindings in one request (aiokafka's own CreateAclsRequest sends one)."""

    API_KEY = 30

    def __init__(self, acls: Sequence[Acl]) -> None:
        self._acls = acls

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(
            [(a.resource, a.name, a.pattern, a.principal, "*", a.operation, _ALLOW) for a in self._acls]
        )


T = TypeVar("T")


async def _as_admin(
    settings: KafkaAccessSettings, what: str, send: Callable[[Any], Awaitable[T]], *, timeout_s: float
) -> T:
    """`send(client)` over an admin connection; retried while the cluster comes up."""
    kafka = settings.kafka
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**kafka.client_args(), request_timeout_ms=kafka.request_timeout_ms)
        try:
            await admin.start()
            return await send(admin._client)
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"cannot {what} on {kafka.bootstrap_servers}: {exc}") from exc
            log.warning("%s failed, retrying: %s", what, exc)
            await asyncio.sleep(1.0)
        finally:
            await admin.close()


async def _send(client: Any, request: Request) -> Any:
    node = client.get_random_node()
    if node is None:
        raise KafkaConnectionError("no broker known")
    return await client.send(node, request)


def _refused(settings: KafkaAccessSettings, what: str, failed: list[str]) -> ConfigError:
    who = settings.kafka.username or "an unauthenticated client"
    return ConfigError(f"Kafka refused {len(failed)} {what} asked by User:{who}: " + "; ".join(failed[:5]))


async def upsert_users(settings: KafkaAccessSettings, *, timeout_s: float = 60.0) -> list[str]:
    """Create or replace the SCRAM credentials of the services whose password is set; their names."""
    passwords = settings.passwords
    if not passwords:
        return []

    async def send(client: Any) -> Any:
        return await _send(client, _UpsertScram(passwords))

    response = await _as_admin(settings, "set SCRAM credentials", send, timeout_s=timeout_s)
    failed = [
        f"{user}: {for_code(code).__name__} {message or ''}".strip()
        for user, code, message, _tags in response.results
        if code != 0
    ]
    if failed:
        raise _refused(settings, "SCRAM credentials", failed)
    return sorted(passwords)


async def apply_acls(settings: KafkaAccessSettings, acls: Sequence[Acl], *, timeout_s: float = 60.0) -> None:
    """Create the bindings (existing ones stay as they are); retry while the cluster comes up."""

    async def send(client: Any) -> Any:
        return await _send(client, _CreateAcls(acls))

    response = await _as_admin(settings, "create ACLs", send, timeout_s=timeout_s)
    failed = [
        f"{acl}: {for_code(code).__name__} {message or ''}".strip()
        for acl, (code, message) in zip(acls, response.creation_responses, strict=True)
        if code != 0
    ]
    if failed:
        raise _refused(settings, "ACLs", failed)


# -- the brokers' side -----------------------------------------------------------------------------

_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"


def plain_jaas(login: str, users: Mapping[str, str]) -> str:
    """A PLAIN JAAS entry that logs in as `login` and accepts `users` (name -> password)."""
    for name, password in users.items():
        if not name.isidentifier() or not password or any(c in password for c in '"\\;\n'):
            raise ConfigError(
                f"Kafka user {name!r}: a JAAS password may not be empty or hold quotes, '\\' or ';'"
            )
    known = " ".join(f'user_{name}="{password}"' for name, password in users.items())
    return f'{_PLAIN_MODULE} required username="{login}" password="{users[login]}" {known};'


def broker_sasl_properties(
    *, listener: str, broker_password: str, admin_password: str, controller_password: str
) -> dict[str, str]:
    """The SASL/ACL part of a broker's server.properties (LocalKafka; docs/security.md for Swarm).

    On `listener` (the clients' and brokers' listener, SASL_PLAINTEXT or
    SASL_SSL) the services log in with SCRAM-SHA-512 (credentials kept in
    the cluster metadata, made by `upsert_users`); the brokers and the
    administrator with PLAIN, their passwords in this configuration. The
    KRaft controller listener cannot use SCRAM (controllers need it before
    they read any metadata): PLAIN, one user. StandardAuthorizer, deny by
    default; only the three own principals are super users.
    """
    name = listener.lower()
    return {
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        f"listener.name.{name}.sasl.enabled.mechanisms": f"{SCRAM_MECHANISM},PLAIN",
        f"listener.name.{name}.scram-sha-512.sasl.jaas.config": f"{_SCRAM_MODULE} required;",
        f"listener.name.{name}.plain.sasl.jaas.config": plain_jaas(
            "broker", {"broker": broker_password, "admin": admin_password}
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": plain_jaas(
            "controller", {"controller": controller_password}
        ),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": "User:broker;User:controller;User:admin",
    }


def acls_for_app(settings: KafkaAccessSettings) -> list[Acl]:
    app = load_app(settings.app_module)
    return service_acls(settings, [et.topic(settings.kafka.topic_prefix) for et in app.entities])


async def grant(settings: KafkaAccessSettings, acls: Sequence[Acl]) -> list[str]:
    """Users first (an ACL may name a user that does not exist yet, but a login may not)."""
    users = await upsert_users(settings)
    await apply_acls(settings, acls)
    return users


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="myko kafka-access",
        description="Create each Myko service's Kafka user and ACLs (settings: MYKO_* variables, "
        "docs/security.md). *_FILE variables are read as files, as in the container.",
    )
    ap.add_argument("--list", action="store_true", help="print the ACLs instead of creating anything")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # Not started by the container entrypoint, so it resolves *_FILE itself.
        settings = KafkaAccessSettings.from_env(resolve_file_vars(os.environ))
        acls = acls_for_app(settings)
        if args.list:
            print("\n".join(str(a) for a in acls))
            return 0
        users = asyncio.run(grant(settings, acls))
    except (ConfigError, Unavailable) as exc:
        print(f"myko kafka-access: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    made = f"SCRAM users {', '.join(users)}; " if users else ""
    print(f"{made}{len(acls)} ACLs in place on {settings.kafka.bootstrap_servers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
