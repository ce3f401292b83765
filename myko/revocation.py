"""Revoking a subject's tokens: a framework entity, its command, and the check services make.

`myko.v1.RevokeTokens{subject}` (admin policy) writes the entity
`myko.v1.Revocation{subject, not_before_ms = now}` through the command bus like
any other write: once, recorded with who revoked (the `myko-principal` header),
on a compacted topic every service already reads (command_svc and saga_svc from
Kafka, query_svc and report_svc through repo_svc), so no service needs
another Kafka consumer and the gateway needs none at all. A token of that
subject issued before `not_before_ms` is refused from then on, and every stream
opened with one ends within MYKO_AUTH_RECHECK_MS plus the time the write takes
to reach the service (docs/security.md).
"""

from __future__ import annotations

import uuid

from myko.command_context import CommandContext
from myko.errors import InvalidArgument
from myko.principal import Principal
from myko.repo import Store
from myko.v1 import identity_pb2

Revocation = identity_pb2.Revocation
RevokeTokens = identity_pb2.RevokeTokens

_NAMESPACE = uuid.UUID("6d796b6f-0000-4000-8000-00000000000d")
MAX_SUBJECT_CHARS = 256


def revocation_id(subject: str) -> str:
    """The id of a subject's Revocation: any subject text maps to a valid entity id."""
    return str(uuid.uuid5(_NAMESPACE, subject))


def is_revoked(store: Store, principal: Principal) -> bool:
    """True when the principal's token was issued before its subject's revocation."""
    found = store.of(Revocation).get(revocation_id(principal.subject))
    # iat has whole seconds: a token issued in the very second of the revocation
    # counts as before it (safe side; signing in a second later works).
    return found is not None and principal.issued_at * 1000 < found.not_before_ms


def revoke_tokens(cmd: identity_pb2.RevokeTokens, ctx: CommandContext) -> None:
    subject = cmd.subject.strip()
    if not subject:
        raise InvalidArgument("subject", "must not be empty")
    if len(subject) > MAX_SUBJECT_CHARS:
        raise InvalidArgument("subject", f"is {len(subject)} characters; at most {MAX_SUBJECT_CHARS}")
    revocation = Revocation(
        subject=subject,
        not_before_ms=ctx.now.ToMilliseconds(),
        revoked_by=ctx.principal.subject,
    )
    revocation.item.id = revocation_id(subject)
    ctx.set(revocation)
