"""Who may do what in the example, and whose rows are whose.

Two kinds of user (roles in their token): a viewer may watch, an operator may
also write. Every Zone and Target belongs to the tenant of the user who wrote
it first (their token's tenant claim); users see and change only their own
tenant's: queries and reports are scoped `by_tenant`, and commands refuse to
touch another tenant's entities. The relations' sagas copy a Zone's tenant to
the Targets they create (relations.py).
"""

from __future__ import annotations

from typing import Protocol

from myko import CommandContext, PermissionDenied, by_tenant, roles
from myko.v1 import item_pb2

OPERATOR = roles("operator")
VIEWER = roles("viewer", "operator")


class Owned(Protocol):
    @property
    def item(self) -> item_pb2.MItem: ...
    @property
    def tenant(self) -> str: ...


def tenant_of(ctx: CommandContext) -> str:
    """The caller's tenant, where what they write belongs (PERMISSION_DENIED when they have none)."""
    return by_tenant.key(ctx.principal)


def check_owned(found: Owned | None, tenant: str, what: str) -> None:
    """Refuse to change (or refer to) an entity of another tenant."""
    if found is not None and found.tenant != tenant:
        raise PermissionDenied(f"{what} {found.item.id} belongs to another tenant")
