"""Hostile requests for the property-based run: what a fuzzer, a bug or an attacker sends.

A request is a body for one of the public endpoints (random bytes, a valid
message with random field values, or such a message mutated byte by byte),
sent one of three ways: straight over gRPC with random metadata and deadline,
or through the gateway as grpc-web binary or text with random framing, base64
damage and headers. A few are gateway GETs of random paths.

Hypothesis draws a `Recipe` per request: the choices that shape it (way in,
endpoint, how the body is made, framed and encoded) and a seed for the rest,
which `build` expands with `random.Random(seed)`. Drawing every byte through
Hypothesis would cost tens of milliseconds a request; a recipe costs little,
and a failing batch is still replayed exactly from Hypothesis's choices.
"""

from __future__ import annotations

import base64
import random
import string
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes

from google.protobuf import any_pb2
from google.protobuf.message import Message
from hypothesis import strategies as st
from targets.v1 import commands_pb2, queries_pb2, reports_pb2

from myko.v1 import command_pb2, item_pb2, live_pb2, query_pb2, report_pb2

from .cases import (
    EXECUTE,
    LIVE_OPEN,
    QUERY_GET,
    QUERY_WATCH,
    REPORT_GET,
    REPORT_WATCH,
    Endpoint,
    Request,
    Via,
    World,
)

MiB = 1024 * 1024
BUS_ENDPOINTS = (EXECUTE, QUERY_WATCH, QUERY_GET, REPORT_WATCH, REPORT_GET)
GET_ENDPOINT = Endpoint("GET", "", streaming=False)


@dataclass(frozen=True)
class Fuzzed:
    endpoint: Endpoint
    via: Via
    request: Request
    # How the body was made, for the report of a failure.
    how: str
    seed: int = 0

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints a failing batch with IPython-style pretty printing.
        printer.text(repr(self))

    def __repr__(self) -> str:
        r = self.request
        parts = [
            f"{self.via.value}:{self.endpoint.name}",
            self.how,
            f"seed={self.seed}",
            f"message={_show(r.message)}",
        ]
        if r.body is not None:
            parts.append(f"body={_show(r.body)}")
        if r.headers:
            parts.append(f"headers={[(k, _show(v, 40)) for k, v in r.headers]}")
        if r.content_type is not None:
            parts.append(f"content_type={r.content_type!r}")
        if r.grpc_timeout is not None:
            parts.append(f"grpc_timeout={r.grpc_timeout!r}")
        if r.timeout_s is not None:
            parts.append(f"timeout_s={r.timeout_s}")
        if r.path is not None:
            parts.append(f"path={_show(r.path, 80)}")
        return "Fuzzed(" + ", ".join(parts) + ")"


def _show(data: bytes, limit: int = 80) -> str:
    if len(data) <= limit:
        return repr(data)
    return f"{data[:limit]!r}...({len(data)} bytes)"


# -- field values ---------------------------------------------------------------------------------

R = random.Random

# Ids a fuzzer would try: plausible ones, the seeded ones, and hostile ones.
_ID_SAMPLES = ["", "t1", "hostile-t1", "hostile-z1", "a b", "a\x00b", "\t", "../x", "é", "\u202e", "x" * 128]
_ODD_CHARS = "\x00\x01\x1b\t\n\r \u00a0\u2028\u202e\ufeffé☃\U0001f600/\\'\"%{}"


def _text(r: R, max_len: int = 30, odd: str = _ODD_CHARS) -> str:
    """Mostly printable ASCII, with control, blank, bidi and astral characters mixed in."""
    alphabet = string.ascii_letters + string.digits + odd
    return "".join(r.choice(alphabet) for _ in range(r.randint(0, max_len)))


def _id(r: R) -> str:
    pick = r.random()
    if pick < 0.5:
        return r.choice(_ID_SAMPLES)
    if pick < 0.85:
        return _text(r, 20)
    return r.choice(["i", "\x00", " ", "é"]) * r.randint(100, 20_000)


def _name(r: R) -> str:
    if r.random() < 0.9:
        return _text(r)
    return r.choice(["n", "\x1b", "\u202e", "☃"]) * r.randint(150, 5_000)


def _float(r: R) -> float:
    return r.choice(
        [
            0.0,
            -0.0,
            1.5,
            -1e308,
            1e308,
            5e-324,
            float("nan"),
            float("inf"),
            float("-inf"),
            r.uniform(-1e6, 1e6),
        ]
    )


def _int64(r: R) -> int:
    return r.choice([0, 1, -1, 2**63 - 1, -(2**63), r.randint(-(2**63), 2**63 - 1), r.randint(-10, 10)])


def _tx(r: R) -> str:
    u = uuid.UUID(int=r.getrandbits(128), version=4)
    return r.choice(
        [
            str(u),
            str(u).upper(),
            "urn:uuid:" + str(u),
            "{" + str(u) + "}",
            u.hex,
            _text(r, 40),
            "",
            " " + str(u),
        ]
    )


def _set_target(r: R) -> commands_pb2.SetTarget:
    return commands_pb2.SetTarget(
        id=_id(r),
        name=_name(r),
        status=r.randint(-5, 10),  # type: ignore[arg-type]
        score=_float(r),
        tags=[_name(r) for _ in range(r.choice([0, 1, 3, 40]))],
        zone_id=_id(r),
        expected_version=r.choice([0, 1, 2**64 - 1]),
    )


_COMMANDS: list[Callable[[R], Message]] = [
    _set_target,
    lambda r: commands_pb2.DeleteTarget(id=_id(r)),
    lambda r: commands_pb2.RecordHits(id=_id(r), count=_int64(r)),
    lambda r: commands_pb2.ImportTargets(targets=[_set_target(r) for _ in range(r.randint(0, 5))]),
    lambda r: commands_pb2.SetZone(id=_id(r), name=_name(r), description=_name(r)),
    lambda r: commands_pb2.DeleteZone(id=_id(r)),
]
_QUERIES: list[Callable[[R], Message]] = [
    lambda r: queries_pb2.AllTargets(),
    lambda r: queries_pb2.TargetsByStatus(status=r.randint(-5, 10)),  # type: ignore[arg-type]
    lambda r: queries_pb2.TargetById(id=_id(r)),
    lambda r: queries_pb2.TargetsInZone(zone_id=_id(r)),
    lambda r: queries_pb2.AllZones(),
]
_REPORTS: list[Callable[[R], Message]] = [
    lambda r: reports_pb2.TargetCountsByStatus(),
    lambda r: reports_pb2.ZoneTotals(zone_id=_id(r)),
]
_TYPE_NAMES = [
    "targets.v1.SetTarget",
    "targets.v1.AllTargets",
    "targets.v1.ZoneTotals",
    "targets.v1.Nope",
    "myko.v1.CommandRequest",
    "",
]


def _packed(r: R, makers: list[Callable[[R], Message]]) -> any_pb2.Any:
    """An Any: usually the message as it is, else with a foreign type URL or payload."""
    out = any_pb2.Any()
    out.Pack(r.choice(makers)(r))
    choice = r.randrange(10)
    name = r.choice(_TYPE_NAMES) if r.random() < 0.7 else _text(r, 40)
    if choice == 0:
        out.type_url = r.choice(["type.googleapis.com/", "", "x/", "/"]) + name
    elif choice == 1:
        out.type_url = name  # often without '/'
    elif choice == 2:
        out.value = r.randbytes(r.randint(0, 64))
    elif choice == 3:
        out.value += b"\x98\x06" + bytes([r.randrange(128)])  # an unknown field
    return out


def _watermark(r: R, world: World) -> item_pb2.Watermark | None:
    if r.randrange(10):
        return None
    topics = [world.topic("targets.v1.Target"), world.topic("targets.v1.Zone"), "no.such.Topic", ""]
    return item_pb2.Watermark(
        positions=[
            item_pb2.Offset(
                topic=r.choice(topics) if r.random() < 0.8 else _text(r, 20),
                partition=r.randint(-3, 5),
                # Mostly offsets the topics have reached: a fence never reached holds
                # its request (and so its batch) until the deadline.
                offset=r.randint(-5, 20) if r.random() < 0.9 else 10**12,
            )
            for _ in range(r.randint(0, 4))
        ]
    )


def valid_shape(r: R, endpoint: Endpoint, world: World) -> tuple[bytes, bool]:
    """A request message of the endpoint's type with random field values; and whether it fences."""
    if endpoint is EXECUTE:
        return command_pb2.CommandRequest(tx=_tx(r), command=_packed(r, _COMMANDS)).SerializeToString(), False
    if endpoint in (QUERY_WATCH, QUERY_GET):
        wm = _watermark(r, world)
        return query_pb2.QueryRequest(
            query=_packed(r, _QUERIES), at_least=wm
        ).SerializeToString(), wm is not None
    if endpoint in (REPORT_WATCH, REPORT_GET):
        wm = _watermark(r, world)
        return report_pb2.ReportRequest(
            report=_packed(r, _REPORTS), at_least=wm
        ).SerializeToString(), wm is not None
    subs = []
    for i in range(r.randint(0, 300) if r.random() < 0.05 else r.randint(0, 4)):
        sub_id = f"s{i}" if r.random() < 0.8 else _text(r, 8)
        if r.random() < 0.5:
            subs.append(
                live_pb2.LiveSubscription(
                    sub_id=sub_id, query=query_pb2.QueryRequest(query=_packed(r, _QUERIES))
                )
            )
        else:
            subs.append(
                live_pb2.LiveSubscription(
                    sub_id=sub_id, report=report_pb2.ReportRequest(report=_packed(r, _REPORTS))
                )
            )
    return live_pb2.LiveOpen(subscriptions=subs).SerializeToString(), False


def mutated(r: R, data: bytes) -> bytes:
    """`data` with a few byte-level mutations: flips, overwrites, inserts, cuts, repeats."""
    out = bytearray(data)
    for _ in range(r.randint(1, 4)):
        op = r.randrange(6)
        pos = r.randint(0, len(out))
        if op == 0 and out:
            out[min(pos, len(out) - 1)] ^= 1 << r.randrange(8)
        elif op == 1 and out:
            out[min(pos, len(out) - 1)] = r.randrange(256)
        elif op == 2:
            out[pos:pos] = r.randbytes(r.randint(1, 8))
        elif op == 3:
            del out[pos : pos + r.randint(1, 16)]
        elif op == 4:
            del out[pos:]
        else:
            out[pos:pos] = out[pos : pos + r.randint(1, 32)] * r.randint(1, 50)
    return bytes(out)


# Large bodies: at, under and over the gateway's (4 MiB) and the services' (8 MiB) limits.
LARGE_SIZES = (64 * 1024, MiB, 4 * MiB + 1, 9 * MiB)


def message_bytes(r: R, kind: str, endpoint: Endpoint, world: World) -> tuple[bytes, bool]:
    """(request message, whether it may wait on a fence)."""
    if kind == "structured":
        return valid_shape(r, endpoint, world)
    if kind == "mutated":
        return mutated(r, valid_shape(r, endpoint, world)[0]), True
    if kind == "random bytes":
        return r.randbytes(r.randint(0, 512)), True
    size = r.choice(LARGE_SIZES)
    fill = r.choice([b"\x00", b"\x0a", b"\xff", b"\x98\x06\x01"])
    return (fill * (size // len(fill) + 1))[:size], False


# -- transports -----------------------------------------------------------------------------------

_HEADER_NAMES = [
    b"x-request-id",
    b"traceparent",
    b"tracestate",
    b"authorization",
    b"grpc-encoding",
    b"grpc-accept-encoding",
    b"x-user-agent",
    b"cookie",
    b"x-forwarded-for",
    b"x-thing-bin",
    b"grpc-timeout",
    b"te",
]
_HEADER_SAMPLES = [b"", b"\xff\xfe", "é☃".encode(), b"00-abc-01", b"Bearer x.y.z", b"A" * 4000]
_GRPC_TIMEOUTS = [
    b"0n",
    b"1n",
    b"1m",
    b"99999999H",
    b"100000000H",
    b"1S",
    b"abc",
    b"-1S",
    b"",
    b"1.5S",
    b"1 S",
]
_CONTENT_TYPES = [
    b"application/grpc-web",
    b"application/grpc-web+proto",
    b"application/grpc-web-text",
    b"application/grpc-web-text+proto",
    b"application/json",
    b"",
    b"application/grpc",
    b"APPLICATION/GRPC-WEB; charset=\xff",
]


def _header_value(r: R) -> bytes:
    """Any bytes a client can put on one line (no CR or LF: those would end the header)."""
    pick = r.random()
    if pick < 0.5:
        # Non-ASCII but no control characters: HTTP parsers refuse those before the gateway sees them.
        return _text(r, 32, odd=" \u00a0\u202eé☃\U0001f600/\\'\"%{}").encode()
    if pick < 0.55:
        return r.randbytes(r.randint(0, 64)).replace(b"\r", b"").replace(b"\n", b"")
    return r.choice(_HEADER_SAMPLES)


def _header(r: R) -> tuple[bytes, bytes]:
    if r.random() < 0.6:
        name = r.choice(_HEADER_NAMES)
    else:
        name = (
            b"x-"
            + "".join(
                r.choice(string.ascii_lowercase + string.digits + "-") for _ in range(r.randint(1, 20))
            ).encode()
        )
    return name, _header_value(r)


def _grpc_timeout(r: R) -> bytes:
    if r.random() < 0.5:
        return r.choice(_GRPC_TIMEOUTS)
    return str(r.randint(0, 10**10)).encode() + r.choice(b"HMSmunx").to_bytes(1, "big")


def _frame(payload: bytes, flag: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">BI", flag, len(payload) if length is None else length) + payload


FRAMINGS = (
    "one frame",
    "random flag",
    "wrong length",
    "two frames",
    "data + trailer",
    "trailers first",
    "unframed",
    "many empty frames",
    "trailing bytes",
)


def framed(r: R, how: str, message: bytes) -> bytes:
    """The grpc-web body for `message`, framed (or damaged) as `how` says."""
    if how == "random flag":
        return _frame(message, flag=r.randrange(256))
    if how == "wrong length":
        return _frame(message, length=max(0, len(message) + r.randint(-8, 8)))
    if how == "two frames":
        return _frame(message) + _frame(r.randbytes(r.randint(0, 32)))
    if how == "data + trailer":
        return _frame(message) + _frame(b"grpc-status: 0\r\n", flag=0x80)
    if how == "trailers first":
        return _frame(b"", flag=0x80) * r.randint(1, 3) + _frame(message)
    if how == "unframed":
        return message
    if how == "many empty frames":
        return _frame(b"") * r.randint(2, 20_000)
    if how == "trailing bytes":
        return _frame(message) + r.randbytes(r.randint(1, 8))
    return _frame(message)


ENCODINGS = ("base64", "base64 in two chunks", "base64 with a blank", "damaged base64", "cut base64")


def text_encoded(r: R, how: str, data: bytes) -> bytes:
    """grpc-web-text for `data`, encoded (or damaged) as `how` says."""
    encoded = base64.b64encode(data)
    if how == "base64 in two chunks":
        cut = r.randint(0, len(data))
        return base64.b64encode(data[:cut]) + base64.b64encode(data[cut:])
    if how == "base64 with a blank":
        pos = r.randint(0, len(encoded))
        return encoded[:pos] + r.choice([b" ", b"\r\n", b"\t"]) + encoded[pos:]
    if how == "damaged base64" and encoded:
        pos = r.randrange(len(encoded))
        return encoded[:pos] + r.choice([b"!", b"=", b"-", b"_", b"\xff", b"*"]) + encoded[pos + 1 :]
    if how == "cut base64":
        return encoded[: r.randint(0, len(encoded))]
    return encoded


def _metadata(r: R) -> tuple[tuple[str, str | bytes], ...]:
    out: list[tuple[str, str | bytes]] = []
    printable = "".join(chr(c) for c in range(0x20, 0x7F))
    for _ in range(r.randint(0, 6)):
        key = "".join(r.choice(string.ascii_lowercase + string.digits + "-") for _ in range(r.randint(1, 16)))
        if r.random() < 0.3:
            out.append((f"x-{key}-bin", r.randbytes(r.randint(0, 64))))
        else:
            name = r.choice(["authorization", "traceparent", "x-request-id", f"x-{key}"])
            out.append((name, "".join(r.choice(printable) for _ in range(r.randint(0, 64)))))
    return tuple(out)


# -- recipes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """Hypothesis's choices for one request; `seed` fills in everything else."""

    via: Via
    endpoint: Endpoint
    kind: str
    framing: str
    encoding: str
    seed: int


# Weighted by repetition (sampled_from draws about evenly): about 2% GETs, and
# bodies 40% structured, 40% mutated, 18% random bytes, 2% large.
_WAYS = (*[Via.GRPC, Via.WEB, Via.WEB_TEXT] * 16, Via.GET)
_KINDS = ("structured",) * 20 + ("mutated",) * 20 + ("random bytes",) * 9 + ("large",)


@st.composite
def recipes(draw: st.DrawFn) -> Recipe:
    seed = draw(st.integers(0, 2**64 - 1))
    via = draw(st.sampled_from(_WAYS))
    if via is Via.GET:
        return Recipe(Via.GET, GET_ENDPOINT, "GET", "", "", seed)
    endpoint = draw(st.sampled_from(BUS_ENDPOINTS if via is Via.GRPC else (*BUS_ENDPOINTS, LIVE_OPEN)))
    kind = draw(st.sampled_from(_KINDS))
    # Most bodies are framed and encoded correctly, so their contents reach the services.
    framing = draw(st.sampled_from((FRAMINGS[0],) * 8 + FRAMINGS[1:]))
    encoding = draw(st.sampled_from((ENCODINGS[0],) * 6 + ENCODINGS[1:]))
    return Recipe(via, endpoint, kind, framing, encoding, seed)


# A deadline for direct calls: a fence on an unknown topic would otherwise hold a
# request (and its batch) for the services' 10 s cap.
_FAR = 10 * 365 * 86400.0


def build(recipe: Recipe, world: World) -> Fuzzed:
    fuzzed = _build(random.Random(recipe.seed), recipe, world)
    return Fuzzed(fuzzed.endpoint, fuzzed.via, fuzzed.request, fuzzed.how, recipe.seed)


def _build(r: R, recipe: Recipe, world: World) -> Fuzzed:
    if recipe.via is Via.GET:
        raw = r.randbytes(r.randint(0, 64)) if r.random() < 0.2 else _text(r, 64).encode()
        # Mostly percent-encoded (what reaches the file server), sometimes raw bytes.
        target = b"/" + (
            quote_from_bytes(raw, safe="/%").encode() if r.random() < 0.8 else raw.translate(None, b"\r\n ")
        )
        return Fuzzed(GET_ENDPOINT, Via.GET, Request(path=target), "GET")
    endpoint = recipe.endpoint
    message, fences = message_bytes(r, recipe.kind, endpoint, world)
    how = recipe.kind if recipe.kind != "large" else f"large {len(message)}"
    if recipe.via is Via.GRPC:
        timeout = r.choice([r.uniform(0.001, 3.0), _FAR, 2.0])
        if fences and timeout > 1.0:
            timeout = 1.0
        return Fuzzed(
            endpoint, recipe.via, Request(message=message, timeout_s=timeout, metadata=_metadata(r)), how
        )
    body = framed(r, recipe.framing, message)
    how += f"; {recipe.framing}"
    if recipe.via is Via.WEB_TEXT:
        body = text_encoded(r, recipe.encoding, body)
        how += f", {recipe.encoding}"
    headers = tuple(_header(r) for _ in range(r.choice([0, 0, 1, 2, 5])))
    content_type: bytes | None = r.choice([None, *_CONTENT_TYPES]) if r.random() < 0.1 else None
    grpc_timeout = _grpc_timeout(r) if r.random() < 0.2 else None
    if fences and grpc_timeout is None:
        grpc_timeout = b"1S"
    path = None
    if r.random() < 0.02:
        path = r.choice([b"/myko.v1.RepoService/Get", b"/", b"/x", b"/myko.v1.CommandBus/execute"])
    request = Request(
        message=message,
        body=body,
        headers=headers,
        content_type=content_type,
        grpc_timeout=grpc_timeout,
        path=path,
    )
    return Fuzzed(endpoint, recipe.via, request, how)
