"""Declarative authorization: who may run a type (`Policy`), and which rows they see (`Scope`).

    @handlers.command(SetTarget, allow=roles("operator"))
    @handlers.query(AllTargets, allow=roles("viewer", "operator"), scope=by_tenant)
    def all_targets(q: AllTargets, repos: Store, tenant: str) -> Observable[list[Target]]: ...

A policy is checked before the handler runs (PERMISSION_DENIED otherwise); a
type that declares none admits any authenticated caller. A scope maps the
caller to a key; a query or report evaluation is shared by the subscriptions
with the same type, parameters *and* scope key, never across keys, and the
handler receives only that key: what it returns cannot depend on anything
else about the caller, which is what makes sharing the evaluation safe.

With auth switched off (MYKO_AUTH_DISABLED=true) every call is anonymous:
policies admit it and `by_tenant` / `by_subject` give the key "".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from myko.errors import PermissionDenied, echo
from myko.principal import Principal, PrincipalKind


@dataclass(frozen=True, slots=True)
class Policy:
    """Who may run a command, query or report type; `|` admits either."""

    description: str
    test: Callable[[Principal], bool]

    def allows(self, principal: Principal) -> bool:
        return principal.anonymous or self.test(principal)

    def check(self, principal: Principal, what: str) -> None:
        """PermissionDenied naming what was asked, what it needs and what the caller has."""
        if self.allows(principal):
            return
        has = f"roles {echo(', '.join(sorted(principal.roles)), 120)}" if principal.roles else "no roles"
        raise PermissionDenied(f"{what} needs {self.description}; {principal.describe()} has {has}")

    def __or__(self, other: Policy) -> Policy:
        return Policy(f"{self.description} or {other.description}", lambda p: self.test(p) or other.test(p))


def roles(*names: str) -> Policy:
    """Callers holding at least one of these roles (the MYKO_OIDC_ROLES_CLAIM claim)."""
    wanted = frozenset(names)
    if not wanted:
        raise ValueError("roles() needs at least one role")
    return Policy(f"role {' or '.join(sorted(wanted))}", lambda p: not wanted.isdisjoint(p.roles))


def scopes(*names: str) -> Policy:
    """Callers whose token was granted at least one of these OAuth scopes (`scope` / `scp`)."""
    wanted = frozenset(names)
    if not wanted:
        raise ValueError("scopes() needs at least one scope")
    return Policy(f"scope {' or '.join(sorted(wanted))}", lambda p: not wanted.isdisjoint(p.scopes))


def services(*subjects: str) -> Policy:
    """Service principals (client credentials), or only these service subjects when named."""
    named = frozenset(subjects)
    what = f"service {' or '.join(sorted(named))}" if named else "a service identity"
    return Policy(what, lambda p: p.kind is PrincipalKind.SERVICE and (not named or p.subject in named))


# The default: any caller with a valid token.
AUTHENTICATED = Policy("an authenticated caller", lambda p: True)


@dataclass(frozen=True, slots=True)
class Scope:
    """Which rows a caller sees: `key_of(principal)` names the slice, "" is everything."""

    name: str
    key_of: Callable[[Principal], str]

    def key(self, principal: Principal) -> str:
        if principal.anonymous:
            return ""
        return self.key_of(principal)


def _tenant(principal: Principal) -> str:
    if not principal.tenant:
        raise PermissionDenied(f"{principal.describe()} belongs to no tenant (the token has no tenant claim)")
    return principal.tenant


# Each caller sees the rows of their tenant (MYKO_OIDC_TENANT_CLAIM).
by_tenant = Scope("tenant", _tenant)
# Each caller sees their own rows.
by_subject = Scope("subject", lambda p: p.subject)
# No row-level scoping: everyone allowed sees the same result.
UNSCOPED = Scope("none", lambda p: "")
