"""HTTP headers <-> gRPC metadata, and the grpc-timeout header.

Only allow-listed request headers go upstream (GatewaySettings.pass_headers and
scope_headers): whatever a proxy or browser adds (x-request-id from an ingress,
cookies, x-forwarded-*) stays at the gateway, so it can neither reach a service
unasked nor split a shared LiveBus feed.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from multidict import CIMultiDictProxy

from myko.errors import MetadataError, echo
from myko.gateway.status_text import clip

_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
# A deadline further away than this is treated as none, as grpc-go does: grpc's
# own arithmetic overflows on the header's largest values (99999999H) and would
# report an instant DEADLINE_EXCEEDED.
MAX_DEADLINE_S = 30 * 24 * 3600.0

Metadata = tuple[tuple[str, str | bytes], ...]
# What grpc.aio hands back as initial or trailing metadata.
AnyMetadata = Iterable[Any] | None


def parse_timeout(value: str | None) -> float | None:
    """grpc-timeout (`<= 8 digits><unit>`) in seconds; None when absent or beyond MAX_DEADLINE_S."""
    if value is None:
        return None
    m = _TIMEOUT.match(value.strip())
    if not m:
        raise MetadataError("grpc-timeout", f"invalid value {echo(value)}")
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    return None if seconds > MAX_DEADLINE_S else seconds


def _value(key: str, raw: str) -> str | bytes:
    if key.endswith("-bin"):
        try:
            return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise MetadataError(key, "not base64") from None
    # gRPC metadata values are printable ASCII; anything else goes in a -bin header.
    if not (raw.isascii() and raw.isprintable()):
        raise MetadataError(key, "value must be printable ASCII (send binary values in a -bin header)")
    return raw


class MetadataPolicy:
    """Which request headers become call metadata.

    `pass_headers` go upstream on proxied calls only (tracing ids: they do not
    change a result and must not split a shared feed). `scope_headers` go on
    every call and are part of a LiveBus feed's key: a feed is shared only
    between subscriptions whose scope headers are equal (e.g. `authorization`).
    """

    def __init__(self, pass_headers: Iterable[str], scope_headers: Iterable[str]) -> None:
        self._scope = frozenset(h.lower() for h in scope_headers)
        self._call = self._scope | frozenset(h.lower() for h in pass_headers)

    def call_metadata(self, headers: CIMultiDictProxy[str]) -> Metadata:
        return self._pick(headers, self._call)

    def scope_metadata(self, headers: CIMultiDictProxy[str]) -> Metadata:
        """Sorted, so equal scopes compare equal whatever order the headers came in."""
        return tuple(sorted(self._pick(headers, self._scope), key=lambda kv: (kv[0], repr(kv[1]))))

    @staticmethod
    def _pick(headers: CIMultiDictProxy[str], allowed: frozenset[str]) -> Metadata:
        out: list[tuple[str, str | bytes]] = []
        for raw_key, raw in headers.items():
            key = raw_key.lower()
            if key in allowed:
                out.append((key, _value(key, raw)))
        return tuple(out)


def metadata_headers(metadata: AnyMetadata) -> list[tuple[str, str]]:
    """Response metadata as header lines; binary values go base64 as gRPC requires."""
    out: list[tuple[str, str]] = []
    for entry in metadata or ():
        # grpc.aio yields (key, value) pairs; grpc-stubs types them as objects with .key/.value.
        key, value = entry if isinstance(entry, tuple) else (entry.key, entry.value)
        if isinstance(value, bytes):
            out.append((key, base64.b64encode(value).decode("ascii")))
        else:
            out.append((key, value))
    return out


def status_trailers(code: int, message: str, extra: AnyMetadata = None) -> list[tuple[str, str]]:
    # grpc-message is percent-encoded per the gRPC HTTP/2 spec, and bounded in length.
    trailers = [("grpc-status", str(code))]
    if message:
        trailers.append(("grpc-message", quote(clip(message), safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")))
    trailers += [(k, v) for k, v in metadata_headers(extra) if k not in ("grpc-status", "grpc-message")]
    return trailers
