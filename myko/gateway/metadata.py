"""HTTP headers <-> gRPC metadata, and the grpc-timeout header."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from multidict import CIMultiDictProxy

# Headers that describe the HTTP/1.1 exchange or the browser, not the call.
_NOT_METADATA = frozenset(
    {
        "accept",
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "content-length",
        "content-type",
        "cookie",
        "dnt",
        "expect",
        "grpc-accept-encoding",
        "grpc-encoding",
        "grpc-timeout",
        "host",
        "keep-alive",
        "origin",
        "pragma",
        "priority",
        "proxy-connection",
        "referer",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "x-grpc-web",
        "x-user-agent",
    }
)
_NOT_METADATA_PREFIXES = ("sec-", "access-control-", "grpc-", "proxy-", "upgrade-")
_VALID_KEY = re.compile(r"^[0-9a-z_.\-]+$")
_TIMEOUT = re.compile(r"^(\d{1,8})([HMSmun])$")
_UNIT_SECONDS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}

Metadata = tuple[tuple[str, str | bytes], ...]
# What grpc.aio hands back as initial or trailing metadata.
AnyMetadata = Iterable[Any] | None


class MetadataError(ValueError):
    """A header that cannot become gRPC metadata (bad grpc-timeout, bad -bin value)."""


def parse_timeout(value: str | None) -> float | None:
    """grpc-timeout (`<= 8 digits><unit>`) in seconds; None when absent."""
    if value is None:
        return None
    m = _TIMEOUT.match(value.strip())
    if not m:
        raise MetadataError(f"invalid grpc-timeout {value!r}")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def request_metadata(headers: CIMultiDictProxy[str]) -> Metadata:
    """Custom request headers as call metadata; `-bin` values are base64 on the wire."""
    out: list[tuple[str, str | bytes]] = []
    for raw_key, value in headers.items():
        key = raw_key.lower()
        if key in _NOT_METADATA or key.startswith(_NOT_METADATA_PREFIXES) or not _VALID_KEY.match(key):
            continue
        if key.endswith("-bin"):
            try:
                out.append((key, base64.b64decode(value + "=" * (-len(value) % 4))))
            except binascii.Error:
                raise MetadataError(f"header {key} is not base64") from None
        else:
            out.append((key, value))
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
    # grpc-message is percent-encoded per the gRPC HTTP/2 spec.
    trailers = [("grpc-status", str(code))]
    if message:
        trailers.append(("grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")))
    trailers += [(k, v) for k, v in metadata_headers(extra) if k not in ("grpc-status", "grpc-message")]
    return trailers
