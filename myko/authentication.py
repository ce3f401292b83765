"""Who a call comes from: `authorization: Bearer <token>` -> Principal, or UNAUTHENTICATED.

The same scheme everywhere: the gateway reads the browser's `Authorization`
header, every public gRPC service the `authorization` metadata (so internal
callers and `grpcurl -H 'authorization: Bearer ...'` work alike). With auth
switched off (MYKO_AUTH_DISABLED=true) every call is ANONYMOUS.

`problem(principal)` says whether a principal stopped being valid since: its
token expired (by this service's clock, leeway not counted: streams end at
`exp`) or its subject was revoked after the token was issued (myko/revocation.py).
Open streams ask it every MYKO_AUTH_RECHECK_MS (myko/stream_guard.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from myko.errors import MykoError, Unauthenticated
from myko.oidc import Issuer
from myko.principal import ANONYMOUS, Principal
from myko.settings import AuthSettings
from myko.tokens import TokenVerifier

log = logging.getLogger(__name__)

# True when the principal's subject was revoked after its token was issued.
RevocationCheck = Callable[[Principal], bool]

MISSING = "no credentials: send the header `authorization: Bearer <access token>`"


class Authenticator:
    def __init__(
        self,
        settings: AuthSettings,
        *,
        revoked: RevocationCheck | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._revoked = revoked
        self._clock = clock
        self.issuer: Issuer | None = None
        self._verifier: TokenVerifier | None = None
        if settings.enabled:
            self.issuer = Issuer(settings)
            self._verifier = TokenVerifier(settings, self.issuer, clock=clock)

    @classmethod
    def off(cls) -> Authenticator:
        return cls(AuthSettings.off())

    @property
    def enabled(self) -> bool:
        return self._verifier is not None

    def log_mode(self, service: str) -> None:
        if self.enabled:
            log.info(
                "%s: callers need tokens of %s for %s", service, self.settings.issuer, self.settings.audience
            )
        else:
            log.warning(
                "%s: AUTHENTICATION IS OFF (MYKO_AUTH_DISABLED=true): anyone who reaches it may run "
                "every command and watch every query; for local development only",
                service,
            )

    async def from_metadata(self, metadata: Iterable[Any] | None) -> Principal:
        """The caller of a gRPC call, from its invocation metadata."""
        if self._verifier is None:
            return ANONYMOUS
        values = [value for key, value in ((_key_value(m)) for m in metadata or ()) if key == "authorization"]
        if len(values) > 1:
            raise Unauthenticated("more than one authorization header")
        return await self.from_header(values[0] if values else None)

    async def from_header(self, value: str | bytes | None) -> Principal:
        """The caller presenting this `authorization` header value."""
        if self._verifier is None:
            return ANONYMOUS
        if value is None or value == "":
            raise Unauthenticated(MISSING)
        principal = await self._verifier.verify(bearer_token(value))
        if self._revoked is not None and self._revoked(principal):
            raise Unauthenticated(f"the token of {principal.describe()} was revoked; sign in again")
        return principal

    def problem(self, principal: Principal) -> MykoError | None:
        """Why a principal accepted earlier is no longer valid; None while it is."""
        if principal.anonymous:
            return None
        if self._clock() >= principal.expires_at:
            return Unauthenticated("the token expired; renew it and open the stream again")
        if self._revoked is not None and self._revoked(principal):
            return Unauthenticated(f"the token of {principal.describe()} was revoked; sign in again")
        return None

    async def warm_up(self) -> None:
        """Fetch the issuer's discovery and keys now, so a first call is not slower (best effort)."""
        if self.issuer is None:
            return
        try:
            await self.issuer.prefetch()
        except MykoError as exc:
            log.warning("identity provider not reachable yet (%s); will retry on the first call", exc.message)

    async def close(self) -> None:
        if self.issuer is not None:
            await self.issuer.close()


def bearer_token(value: str | bytes) -> str:
    if isinstance(value, bytes):
        raise Unauthenticated("the authorization header must be text: `Bearer <token>`")
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("the authorization header must be `Bearer <token>`")
    return token


def _key_value(metadatum: Any) -> tuple[str, Any]:
    # grpc.aio yields (key, value) pairs (typed by grpc-stubs as objects with .key/.value).
    if isinstance(metadatum, tuple):
        return str(metadatum[0]), metadatum[1]
    return str(metadatum.key), metadatum.value
