"""Kafka ACLs: each Myko service its own principal, allowed only what it does.

    myko kafka-acls            # grant them (an administrator's MYKO_KAFKA_* credentials)
    myko kafka-acls --list     # print them instead

With `StandardAuthorizer` and no `allow.everyone.if.no.acl.found`, a
principal may do nothing it was not granted. The grants (docs/security.md,
"Kafka"), every topic name with MYKO_TOPIC_PREFIX:

- command: reads and writes the entity topics, the tx log and the command
  lease; writes the quarantine topic; its lease group and its transactional
  id. The only writer of entity topics, tx log and lease.
- repo: reads the entity topics; writes the quarantine topic.
- saga: reads the entity topics in its consumer groups (`<group id>.<saga>`);
  writes the dead-letter topic.
- query, report, gateway: nothing (they have no Kafka credentials at all).

Each service may also CREATE the topics it creates at start (`ensure_topics`),
so a fresh cluster needs no other set-up. Topics are named one by one
(LITERAL), so a new entity type needs this run again before the services
that use it start: until then its topic is refused to them, loudly.

aiokafka has no ACL API; its protocol classes have CreateAcls, sent here over
an admin client's connection (as myko/topic_identity.py does for Metadata).
Creating an ACL that exists is a no-op, so running this again is safe.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, for_code
from aiokafka.protocol.admin import CreateAclsRequest_v1
from aiokafka.protocol.api import Request

from myko.app import load_app
from myko.errors import ConfigError, Unavailable
from myko.leader import LEASE_TOPIC
from myko.settings import KafkaAclSettings
from myko.topics import TX_LOG

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


def service_acls(settings: KafkaAclSettings, entity_topics: Sequence[str]) -> list[Acl]:
    """Every grant the Kafka-using services need, for an application with these entity topics."""
    prefix = settings.kafka.topic_prefix
    tx_log, lease = prefix + TX_LOG, prefix + LEASE_TOPIC
    quarantine, dead_letter = prefix + settings.quarantine_topic, prefix + settings.dead_letter_topic
    R, W, C, D = Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DESCRIBE
    T = Resource.TOPIC
    command, repo, saga = settings.command_user, settings.repo_user, settings.saga_user
    acls = [
        *_grant(command, (D, C, R, W), T, [*entity_topics, tx_log, lease]),
        *_grant(command, (D, C, W), T, [quarantine]),
        # The lease is a consumer group; the writer is one shared transactional id.
        *_grant(command, (D, R), Resource.GROUP, [f"{prefix}myko-command"]),
        *_grant(command, (D, W), Resource.TRANSACTIONAL_ID, [f"myko-command-{prefix}leader"]),
        *_grant(repo, (D, C, R), T, entity_topics),
        *_grant(repo, (D, C, W), T, [quarantine]),
        *_grant(saga, (D, C, R), T, entity_topics),
        *_grant(saga, (D, C, W), T, [dead_letter]),
    ]
    # One group per saga: `<prefix><group id>.<saga name>` (myko/saga.py).
    acls += [
        Acl(f"User:{saga}", op, Resource.GROUP, f"{prefix}{settings.saga_group_id}.", Pattern.PREFIXED)
        for op in (D, R)
    ]
    return sorted(set(acls))


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    """All bindings in one request (aiokafka's own CreateAclsRequest sends one)."""

    API_KEY = 30

    def __init__(self, acls: Sequence[Acl]) -> None:
        self._acls = acls

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        return request_struct_class(
            [(a.resource, a.name, a.pattern, a.principal, "*", a.operation, _ALLOW) for a in self._acls]
        )


async def apply_acls(settings: KafkaAclSettings, acls: Sequence[Acl], *, timeout_s: float = 60.0) -> None:
    """Create the bindings (existing ones stay as they are); retry while the cluster comes up."""
    kafka = settings.kafka
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**kafka.client_args(), request_timeout_ms=kafka.request_timeout_ms)
        try:
            await admin.start()
            client = admin._client
            node = client.get_random_node()
            if node is None:
                raise KafkaConnectionError("no broker known")
            response = await client.send(node, _CreateAcls(acls))
            break
        except (KafkaConnectionError, KafkaError, OSError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise Unavailable(f"cannot create ACLs on {kafka.bootstrap_servers}: {exc}") from exc
            log.warning("creating ACLs failed, retrying: %s", exc)
            await asyncio.sleep(1.0)
        finally:
            await admin.close()
    failed = [
        f"{acl}: {for_code(code).__name__} {message or ''}".strip()
        for acl, (code, message) in zip(acls, response.creation_responses, strict=True)
        if code != 0
    ]
    if failed:
        who = kafka.username or "an unauthenticated client"
        raise ConfigError(f"Kafka refused {len(failed)} ACLs created as User:{who}: " + "; ".join(failed[:5]))


def acls_for_app(settings: KafkaAclSettings) -> list[Acl]:
    app = load_app(settings.app_module)
    return service_acls(settings, [et.topic(settings.kafka.topic_prefix) for et in app.entities])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="myko kafka-acls",
        description="Grant each Myko service its Kafka ACLs (settings: MYKO_* variables, docs/security.md).",
    )
    ap.add_argument("--list", action="store_true", help="print the ACLs instead of creating them")
    args = ap.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = KafkaAclSettings.from_env()
        acls = acls_for_app(settings)
        if args.list:
            print("\n".join(str(a) for a in acls))
            return 0
        asyncio.run(apply_acls(settings, acls))
    except (ConfigError, Unavailable) as exc:
        print(f"myko kafka-acls: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    print(f"{len(acls)} ACLs in place on {settings.kafka.bootstrap_servers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
