"""Who is calling: the principal a verified token (or the open mode) stands for.

Every command handler sees it as `ctx.principal`; query and report handlers
see only what their declared scope derives from it (myko/policy.py), so an
evaluation shared by everyone in a scope cannot depend on anything else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class PrincipalKind(enum.Enum):
    # A person, signed in through the identity provider.
    USER = "user"
    # A program with its own credentials (client credentials), e.g. saga_svc.
    SERVICE = "service"
    # Nobody in particular: only when auth is switched off (MYKO_AUTH_DISABLED=true).
    ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    kind: PrincipalKind
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    tenant: str | None = None
    # Epoch seconds; 0 when there is no token (anonymous).
    expires_at: float = 0.0
    issued_at: float = 0.0
    token_id: str | None = None
    # The OAuth client the token was issued to (`client_id` / `azp`), when it says.
    client_id: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.kind is PrincipalKind.ANONYMOUS

    def describe(self) -> str:
        """For log lines and error messages: kind and subject, never the token."""
        return f"{self.kind.value} {self.subject!r}"


# What every call is made as when auth is switched off.
ANONYMOUS = Principal(subject="anonymous", kind=PrincipalKind.ANONYMOUS)
