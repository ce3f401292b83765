"""Bearer tokens -> principals: PyJWT verification against the issuer's keys, cached by token.

A token is accepted when its signature verifies with one of the issuer's
published keys under an allowed asymmetric algorithm, `iss` is the issuer,
`aud` contains the audience, and `exp`, `iat` (and `nbf` when present) hold
within the leeway. Anything else is UNAUTHENTICATED with a message saying
which check failed (never the token itself).

A verified token is remembered by its exact text until it expires, so the
next call with it costs a dictionary lookup, not a signature check.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from myko.errors import Unauthenticated
from myko.oidc import Issuer
from myko.principal import Principal, PrincipalKind
from myko.settings import AuthSettings

# Larger than any token an issuer sends; gRPC's own metadata limit is 8 KiB.
MAX_TOKEN_CHARS = 16 * 1024
# Roles, scopes: a token carrying more is not one Myko was meant to get.
MAX_CLAIM_ITEMS = 256
MAX_CLAIM_CHARS = 256
_REQUIRED = ["exp", "iat", "iss", "aud"]


class TokenVerifier:
    def __init__(
        self, settings: AuthSettings, issuer: Issuer, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._issuer = issuer
        self._clock = clock
        self._cache: OrderedDict[str, Principal] = OrderedDict()

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified before and not expired since; None otherwise."""
        principal = self._cache.get(token)
        if principal is None:
            return None
        if self._clock() >= principal.expires_at + self._settings.leeway_s:
            del self._cache[token]
            return None
        self._cache.move_to_end(token)
        return principal

    async def verify(self, token: str) -> Principal:
        principal = self.cached(token)
        if principal is not None:
            return principal
        principal = await self._verify(token)
        self._cache[token] = principal
        if len(self._cache) > self._settings.token_cache_size:
            self._cache.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated(f"the token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not a JWT") from None
        alg = header.get("alg")
        if alg not in self._settings.algorithms:
            raise Unauthenticated(
                f"the token's algorithm {str(alg)[:20]!r} is not accepted "
                f"(accepted: {', '.join(self._settings.algorithms)})"
            )
        kid = header.get("kid")
        key = await self._issuer.signing_key(kid if isinstance(kid, str) else None, alg)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_s,
                options={"require": _REQUIRED, "enforce_minimum_key_length": True},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the token is not for this audience ({self._settings.audience})") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(f"the token is not from the issuer {self._settings.issuer}") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the token has no {exc.claim} claim") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {str(exc)[:120]}") from None
        return principal_of(claims, self._settings)


def principal_of(claims: Mapping[str, Any], settings: AuthSettings) -> Principal:
    """The principal a verified token's claims describe.

    A token issued to a client for itself (client credentials: no `sub`, `sub`
    equal to its `client_id`, or `gty` client-credentials) is a service; any
    other a user.
    """
    client_id = _text(claims.get("client_id") or claims.get("azp"), "client_id")
    subject = _text(claims.get("sub"), "sub") or client_id
    if not subject:
        raise Unauthenticated("the token names no subject (sub) and no client_id")
    service = claims.get("sub") is None or subject == client_id or claims.get("gty") == "client-credentials"
    return Principal(
        subject=subject,
        kind=PrincipalKind.SERVICE if service else PrincipalKind.USER,
        roles=_names(_claim(claims, settings.roles_claim), settings.roles_claim),
        scopes=_names(claims.get("scope", claims.get("scp")), "scope"),
        tenant=_text(_claim(claims, settings.tenant_claim), settings.tenant_claim),
        expires_at=_number(claims["exp"], "exp"),
        issued_at=_number(claims["iat"], "iat"),
        token_id=_text(claims.get("jti"), "jti"),
        client_id=client_id,
    )


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by dotted path (`realm_access.roles`), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _text(value: Any, name: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_CLAIM_CHARS:
        raise Unauthenticated(f"the token's {name} claim is not a short string")
    return value


def _names(value: Any, name: str) -> frozenset[str]:
    """Roles or scopes: a list of strings, or one space-separated string."""
    if value is None:
        return frozenset()
    items = value.split() if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_CLAIM_ITEMS:
        raise Unauthenticated(f"the token's {name} claim is not a list of names")
    out = set()
    for item in items:
        if not isinstance(item, str) or len(item) > MAX_CLAIM_CHARS:
            raise Unauthenticated(f"the token's {name} claim is not a list of names")
        out.add(item)
    return frozenset(out)


def _number(value: Any, name: str) -> float:
    # PyJWT checked exp/iat are numbers; bool is an int in Python but not in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthenticated(f"the token's {name} claim is not a number")
    return float(value)
