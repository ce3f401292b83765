"""The local identity provider's signing keys: made here, kept as a JWKS file in the run directory.

    keys = SigningKeys.load_or_create(Path(".run/idp/keys.json"))
    keys.rotate()                      # a new signing key; the old one stays published
    token = keys.mint({"iss": ..., "aud": ..., "exp": ...})   # a token the IdP could have signed

The file is a JSON Web Key Set of RSA private keys, which the provider
(idp/server.mjs) loads as is: the FIRST key signs, every key is published on
its JWKS endpoint. Rotation puts a new key first and keeps the previous one
second, so tokens signed before the rotation still verify until they expire;
a third, older key is dropped. Tests use `mint` with these same keys to make
deliberately bad tokens (expired, wrong audience) that only the claims betray.
The file holds private keys: it is written readable by its owner only.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ALGORITHM = "RS256"
KEY_BITS = 2048
# The signing key and the one before it.
MAX_KEYS = 2


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        return cls(kid=secrets.token_urlsafe(12), private_key=key)

    def private_jwk(self) -> dict[str, str]:
        priv = self.private_key.private_numbers()
        pub = priv.public_numbers
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
            "n": _b64(pub.n),
            "e": _b64(pub.e),
            "d": _b64(priv.d),
            "p": _b64(priv.p),
            "q": _b64(priv.q),
            "dp": _b64(priv.dmp1),
            "dq": _b64(priv.dmq1),
            "qi": _b64(priv.iqmp),
        }

    def public_jwk(self) -> dict[str, str]:
        return {k: v for k, v in self.private_jwk().items() if k in ("kty", "kid", "use", "alg", "n", "e")}

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        if jwk.get("kty") != "RSA" or not isinstance(jwk.get("kid"), str):
            raise ValueError("not an RSA private JWK with a kid")
        public = rsa.RSAPublicNumbers(e=_unb64(jwk["e"]), n=_unb64(jwk["n"]))
        numbers = rsa.RSAPrivateNumbers(
            p=_unb64(jwk["p"]),
            q=_unb64(jwk["q"]),
            d=_unb64(jwk["d"]),
            dmp1=_unb64(jwk["dp"]),
            dmq1=_unb64(jwk["dq"]),
            iqmp=_unb64(jwk["qi"]),
            public_numbers=public,
        )
        return cls(kid=jwk["kid"], private_key=numbers.private_key())


class SigningKeys:
    """The key set in `path`: keys[0] signs, all are published."""

    def __init__(self, path: Path, keys: Sequence[SigningKey]) -> None:
        if not keys:
            raise ValueError("a key set needs at least one key")
        self.path = path
        self.keys = list(keys)

    @classmethod
    def load_or_create(cls, path: Path) -> SigningKeys:
        """The keys saved in `path`, or one new key saved there."""
        if path.is_file():
            data = json.loads(path.read_text())
            return cls(path, [SigningKey.from_jwk(k) for k in data["keys"]])
        keys = cls(path, [SigningKey.generate()])
        keys.save()
        return keys

    @property
    def current(self) -> SigningKey:
        return self.keys[0]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        # Owner-only from the first byte: the file holds private keys.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"keys": [k.private_jwk() for k in self.keys]}, f)
        tmp.replace(self.path)

    def rotate(self) -> SigningKey:
        """A new signing key in front; the previous one stays published; older ones go."""
        key = SigningKey.generate()
        self.keys = [key, *self.keys][:MAX_KEYS]
        self.save()
        return key

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [k.public_jwk() for k in self.keys]}

    def mint(
        self, claims: Mapping[str, Any], *, key: SigningKey | None = None, kid: str | None = None
    ) -> str:
        """A JWT signed like the provider signs (RS256, with a `kid` header), carrying `claims` as given.

        `kid` overrides the header only (a token naming a key that did not sign it).
        """
        signer = key or self.current
        return jwt.encode(
            dict(claims),
            signer.private_key,
            algorithm=ALGORITHM,
            headers={"kid": kid if kid is not None else signer.kid, "typ": "at+jwt"},
        )
