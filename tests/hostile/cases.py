"""The hostile-input case table: (endpoint, input, expected status), one line per case.

Every status here is the documented one (docs/errors.md, "Every case" and "The
gateway"), whatever the code does today: a case that fails is a bug to fix, not
a line to change.

Message-level cases (`COMMAND`, `QUERY_WATCH`, ...) are sent three ways: straight
to the service over gRPC, and through the gateway as grpc-web binary and as
grpc-web-text, so the same input gets the same status whichever way it comes in.
`GATEWAY` cases are about the grpc-web wire itself (framing, headers, base64,
paths), `LIVE` cases about the gateway's LiveBus/Open, `GET` cases about the
gateway's file server.

A case's request is built from a `World`: the seeded entities and topic names of
the running stack (tests/hostile/conftest.py seeds them).
"""

from __future__ import annotations

import base64
import enum
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from targets.v1 import commands_pb2, queries_pb2, reports_pb2

from myko.v1 import command_pb2, item_pb2, live_pb2, query_pb2, report_pb2

# gRPC status numbers (grpc.StatusCode values), and HTTP statuses where a case gets no gRPC status.
OK = 0
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
UNIMPLEMENTED = 12

MiB = 1024 * 1024
MAX_INT64 = 2**63 - 1
# Field 99 as a varint: a field no Myko message declares.
UNKNOWN_FIELD = b"\x98\x06\x01"
A_TX = "7d3c1a52-3b1e-4c1e-9a43-0f1f2e3d4c5b"
# A tx the seeding used for SetZone(id=ZONE): reusing it for anything else is refused.
SEEDED_TX = "0b7e5a10-6c1d-4f0e-8a9b-c2d3e4f5a6b7"
ZONE = "hostile-z1"
TARGET = "hostile-t1"
# Seeded with MAX_INT64 hits: one more would overflow the counter.
FULL_TARGET = "hostile-max"


@dataclass(frozen=True)
class World:
    topic_prefix: str

    def topic(self, entity: str) -> str:
        return self.topic_prefix + entity


def seed_commands() -> list[tuple[str, Message]]:
    """(tx, command) run once before the cases, in order."""
    return [
        (SEEDED_TX, commands_pb2.SetZone(id=ZONE, name="hostile zone")),
        ("", commands_pb2.SetTarget(id=TARGET, name="hostile target", zone_id=ZONE)),
        ("", commands_pb2.SetTarget(id=FULL_TARGET, name="full of hits")),
        ("", commands_pb2.RecordHits(id=FULL_TARGET, count=MAX_INT64)),
    ]


# -- what is sent ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request. `message` is the request message's bytes (framed by the transport);
    the gateway-only fields replace parts of the grpc-web request as sent."""

    message: bytes = b""
    timeout_s: float | None = None  # gRPC: the client's deadline
    grpc_timeout: bytes | None = None  # grpc-web: the grpc-timeout header, as sent
    headers: tuple[tuple[bytes, bytes], ...] = ()  # grpc-web: extra headers
    content_type: bytes | None = None  # grpc-web: replaces the mode's content type
    body: bytes | None = None  # grpc-web: the whole HTTP body (framing included), as sent
    path: bytes | None = None  # grpc-web: replaces the endpoint's path
    subs: tuple[str, ...] = ()  # LiveBus: the sub_ids whose first answer to wait for
    metadata: tuple[tuple[str, str | bytes], ...] = ()  # gRPC: call metadata

    def sent_bytes(self) -> bytes:
        """Everything the client supplied, to check no long run of it is echoed."""
        parts = [self.message, self.body or b"", self.path or b"", self.grpc_timeout or b""]
        parts += [v for _, v in self.headers]
        parts += [v if isinstance(v, bytes) else v.encode() for _, v in self.metadata]
        return b"\0".join(parts)


@dataclass(frozen=True)
class Expect:
    code: int | None  # the gRPC status; None when the answer is HTTP only
    http: int = 200
    subs: tuple[tuple[str, int], ...] = ()  # LiveBus: the code each sub_id's first frame carries
    # Also acceptable: only where gRPC itself lets two answers race (a deadline already past).
    or_code: int | None = None

    def accepts(self, code: int | None) -> bool:
        return code == self.code or (self.or_code is not None and code == self.or_code)


def status(code: int) -> Expect:
    return Expect(code)


# A deadline already past when the call arrives: gRPC checks deadlines at points
# in a call, so a fast answer may still win the race. Never INTERNAL, never a hang.
PAST_DEADLINE = Expect(DEADLINE_EXCEEDED, or_code=OK)


def http(status_code: int) -> Expect:
    return Expect(None, http=status_code)


def subs(**codes: int) -> Expect:
    return Expect(OK, subs=tuple(sorted(codes.items())))


# -- endpoints and ways in ------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    streaming: bool


EXECUTE = Endpoint("CommandBus/Execute", "/myko.v1.CommandBus/Execute", streaming=False)
QUERY_WATCH = Endpoint("QueryBus/Watch", "/myko.v1.QueryBus/Watch", streaming=True)
QUERY_GET = Endpoint("QueryBus/Get", "/myko.v1.QueryBus/Get", streaming=False)
REPORT_WATCH = Endpoint("ReportBus/Watch", "/myko.v1.ReportBus/Watch", streaming=True)
REPORT_GET = Endpoint("ReportBus/Get", "/myko.v1.ReportBus/Get", streaming=False)
LIVE_OPEN = Endpoint("LiveBus/Open", "/myko.v1.LiveBus/Open", streaming=True)
UPSTREAM_OF = {
    EXECUTE: "command",
    QUERY_WATCH: "query",
    QUERY_GET: "query",
    REPORT_WATCH: "report",
    REPORT_GET: "report",
}


class Via(enum.Enum):
    GRPC = "grpc"  # straight to the service
    WEB = "web"  # gateway, application/grpc-web+proto
    WEB_TEXT = "web-text"  # gateway, application/grpc-web-text
    GET = "get"  # gateway, plain HTTP GET


Build = Callable[[World], Request]


@dataclass(frozen=True)
class Case:
    endpoint: Endpoint
    via: Via
    name: str
    build: Build
    expect: Expect
    # Seconds the case may take before it counts as "no answer" (a deadline case waits).
    wait_s: float = 30.0

    @property
    def id(self) -> str:
        return f"{self.via.value}:{self.endpoint.name}:{self.name}"


@dataclass(frozen=True)
class Line:
    """One row of a message-level table, before it is sent every way."""

    name: str
    build: Build | bytes
    expect: Expect
    vias: Sequence[Via] = (Via.GRPC, Via.WEB, Via.WEB_TEXT)
    wait_s: float = 30.0


# -- building blocks ------------------------------------------------------------------------------


def pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def any_of(type_name: str, value: bytes = b"") -> any_pb2.Any:
    return any_pb2.Any(type_url=f"type.googleapis.com/{type_name}", value=value)


def command(cmd: Message | any_pb2.Any, tx: str = "") -> bytes:
    packed = cmd if isinstance(cmd, any_pb2.Any) else pack(cmd)
    return command_pb2.CommandRequest(tx=tx or _fresh_tx(), command=packed).SerializeToString()


def _fresh_tx() -> str:
    return str(uuid.uuid4())


def query(q: Message | any_pb2.Any, at_least: item_pb2.Watermark | None = None) -> bytes:
    packed = q if isinstance(q, any_pb2.Any) else pack(q)
    return query_pb2.QueryRequest(query=packed, at_least=at_least).SerializeToString()


def report(r: Message | any_pb2.Any, at_least: item_pb2.Watermark | None = None) -> bytes:
    packed = r if isinstance(r, any_pb2.Any) else pack(r)
    return report_pb2.ReportRequest(report=packed, at_least=at_least).SerializeToString()


def at(topic: str, partition: int = 0, offset: int = 1) -> item_pb2.Watermark:
    return item_pb2.Watermark(positions=[item_pb2.Offset(topic=topic, partition=partition, offset=offset)])


def cut(data: bytes, keep: int) -> bytes:
    """The first `keep` bytes: a message ending mid-field."""
    return data[:keep]


def req(message: bytes, **kw: object) -> Request:
    return Request(message=message, **kw)  # type: ignore[arg-type]


def _set_target(**kw: object) -> commands_pb2.SetTarget:
    kw.setdefault("name", "hostile")
    return commands_pb2.SetTarget(**kw)  # type: ignore[arg-type]


def frame(payload: bytes, flag: int = 0) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def trailer_frame(text: bytes = b"grpc-status: 0\r\n") -> bytes:
    return frame(text, flag=0x80)


_3S: dict[str, object] = {"timeout_s": 3.0, "grpc_timeout": b"3S"}
# grpc-web: the header's largest value. gRPC: ten years, as the Python client
# itself overflows (an instant DEADLINE_EXCEEDED) on 99999999 hours.
_FAR: dict[str, object] = {"timeout_s": 10 * 365 * 86400.0, "grpc_timeout": b"99999999H"}
HUGE = 9 * MiB  # over MYKO_MAX_MESSAGE_BYTES (8 MiB) and the gateway's 4 MiB message limit
LONG_ID = "i" * 100_000
TYPE_URL_1MB = "type.googleapis.com/" + "X" * MiB


# -- CommandBus/Execute ---------------------------------------------------------------------------

COMMAND: list[Line] = [
    Line("valid SetTarget", lambda w: req(command(_set_target())), status(OK)),
    Line("empty body", b"", status(INVALID_ARGUMENT)),
    Line(
        "truncated message",
        lambda w: req(cut(command(_set_target(name="truncated")), 30)),
        status(INVALID_ARGUMENT),
    ),
    Line("garbage bytes", b"\xff\xfe\xfd\xfc" * 8, status(INVALID_ARGUMENT)),
    Line("a QueryRequest instead", lambda w: req(query(queries_pb2.AllTargets())), status(INVALID_ARGUMENT)),
    Line("invalid UTF-8 in tx", b"\x0a\x04\xff\xfe\xfd\xfc", status(INVALID_ARGUMENT)),
    Line("unknown top-level field", lambda w: req(command(_set_target()) + UNKNOWN_FIELD), status(OK)),
    Line(
        "unknown field in the command",
        lambda w: req(
            command(any_of("targets.v1.SetTarget", _set_target().SerializeToString() + UNKNOWN_FIELD))
        ),
        status(OK),
    ),
    # tx forms (docs/errors.md, "Input rules": canonical 8-4-4-4-12 only, upper case normalised)
    Line("tx missing", lambda w: req(_no_tx(_set_target())), status(INVALID_ARGUMENT)),
    Line("tx not a UUID", lambda w: req(command(_set_target(), tx="not-a-uuid")), status(INVALID_ARGUMENT)),
    Line(
        "tx urn:uuid form",
        lambda w: req(command(_set_target(), tx="urn:uuid:" + A_TX)),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "tx in braces", lambda w: req(command(_set_target(), tx="{" + A_TX + "}")), status(INVALID_ARGUMENT)
    ),
    Line(
        "tx without hyphens",
        lambda w: req(command(_set_target(), tx=A_TX.replace("-", ""))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "tx with blanks", lambda w: req(command(_set_target(), tx=" " + A_TX + " ")), status(INVALID_ARGUMENT)
    ),
    Line(
        "tx nil UUID",
        lambda w: req(command(_set_target(), tx="00000000-0000-0000-0000-000000000000")),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "tx of 100k characters",
        lambda w: req(command(_set_target(), tx="7" * 100_000)),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "tx with a control character",
        lambda w: req(command(_set_target(), tx=A_TX[:-1] + "\x00")),
        status(INVALID_ARGUMENT),
    ),
    Line("tx upper case", lambda w: req(command(_set_target(), tx=_fresh_tx().upper())), status(OK)),
    Line(
        "tx reused for another command",
        lambda w: req(command(_set_target(), tx=SEEDED_TX)),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "tx reused for the same command",
        lambda w: req(command(commands_pb2.SetZone(id=ZONE, name="hostile zone"), tx=SEEDED_TX)),
        status(OK),
    ),
    # the command's Any
    Line(
        "no command",
        lambda w: req(command_pb2.CommandRequest(tx=_fresh_tx()).SerializeToString()),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "type URL without '/'",
        lambda w: req(command(any_pb2.Any(type_url="targets.v1.SetTarget"))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "unknown command type",
        lambda w: req(command(any_of("targets.v1.LaunchMissiles"))),
        status(UNIMPLEMENTED),
    ),
    Line("a query type as command", lambda w: req(command(queries_pb2.AllTargets())), status(UNIMPLEMENTED)),
    Line("1 MB type URL", lambda w: req(command(any_pb2.Any(type_url=TYPE_URL_1MB))), status(UNIMPLEMENTED)),
    Line(
        "undecodable payload",
        lambda w: req(command(any_of("targets.v1.SetTarget", b"\xff\xff\xff"))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "payload of another type",
        lambda w: req(
            command(
                any_of("targets.v1.SetTarget", reports_pb2.ZoneTotal(score_total=1.5).SerializeToString())
            )
        ),
        status(INVALID_ARGUMENT),
    ),
    # sizes
    Line(
        "name of 300 characters",
        lambda w: req(command(_set_target(name="n" * 300))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "payload over MYKO_MAX_COMMAND_BYTES",
        lambda w: req(command(_set_target(name="n" * 600_000))),
        status(RESOURCE_EXHAUSTED),
    ),
    Line(
        "message over the message limit",
        lambda w: req(command(any_of("targets.v1.SetTarget", b"\x12" + _varint(HUGE) + b"n" * HUGE))),
        status(RESOURCE_EXHAUSTED),
    ),
    Line(
        "10,000 tags",
        lambda w: req(command(_set_target(tags=[f"t{i}" for i in range(10_000)]))),
        status(INVALID_ARGUMENT),
    ),
    # ids (docs/errors.md, "Input rules")
    Line("id with a NUL", lambda w: req(command(_set_target(id="a\x00b"))), status(INVALID_ARGUMENT)),
    Line("id with a blank", lambda w: req(command(_set_target(id="a b"))), status(INVALID_ARGUMENT)),
    Line("id with a newline", lambda w: req(command(_set_target(id="a\nb"))), status(INVALID_ARGUMENT)),
    Line("id of 100k characters", lambda w: req(command(_set_target(id=LONG_ID))), status(INVALID_ARGUMENT)),
    Line("id with a slash", lambda w: req(command(_set_target(id="a/b"))), status(INVALID_ARGUMENT)),
    Line(
        "zone_id with a control character",
        lambda w: req(command(_set_target(zone_id="z\x07"))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "SetZone id with a blank",
        lambda w: req(command(commands_pb2.SetZone(id="z 1", name="z"))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "DeleteTarget id empty", lambda w: req(command(commands_pb2.DeleteTarget())), status(INVALID_ARGUMENT)
    ),
    Line(
        "DeleteTarget id of 100k characters",
        lambda w: req(command(commands_pb2.DeleteTarget(id=LONG_ID))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "DeleteZone id with a tab",
        lambda w: req(command(commands_pb2.DeleteZone(id="z\t1"))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "RecordHits id with a blank",
        lambda w: req(command(commands_pb2.RecordHits(id=" ", count=1))),
        status(INVALID_ARGUMENT),
    ),
    # texts
    Line(
        "name with a control character",
        lambda w: req(command(_set_target(name="a\x1bb"))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "name with a bidi override",
        lambda w: req(command(_set_target(name="abc\u202edef"))),
        status(INVALID_ARGUMENT),
    ),
    Line("name blank", lambda w: req(command(_set_target(name="   "))), status(INVALID_ARGUMENT)),
    Line(
        "tag of 100 characters",
        lambda w: req(command(_set_target(tags=["t" * 100]))),
        status(INVALID_ARGUMENT),
    ),
    # numbers
    Line("score NaN", lambda w: req(command(_set_target(score=float("nan")))), status(INVALID_ARGUMENT)),
    Line("score +inf", lambda w: req(command(_set_target(score=float("inf")))), status(INVALID_ARGUMENT)),
    Line("score -inf", lambda w: req(command(_set_target(score=float("-inf")))), status(INVALID_ARGUMENT)),
    Line("status not in the enum", lambda w: req(command(_set_target(status=99))), status(INVALID_ARGUMENT)),
    Line(
        "RecordHits count 0",
        lambda w: req(command(commands_pb2.RecordHits(id=TARGET, count=0))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "RecordHits count negative",
        lambda w: req(command(commands_pb2.RecordHits(id=TARGET, count=-5))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "RecordHits overflowing the counter",
        lambda w: req(command(commands_pb2.RecordHits(id=FULL_TARGET, count=1))),
        status(FAILED_PRECONDITION),
    ),
    Line(
        "RecordHits of max int64 twice",
        lambda w: req(command(commands_pb2.RecordHits(id=FULL_TARGET, count=MAX_INT64))),
        status(FAILED_PRECONDITION),
    ),
    Line(
        "RecordHits on a missing target",
        lambda w: req(command(commands_pb2.RecordHits(id="hostile-missing", count=1))),
        status(FAILED_PRECONDITION),
    ),
    Line(
        "expected_version mismatch",
        lambda w: req(command(_set_target(id=TARGET, expected_version=999, zone_id=ZONE))),
        status(FAILED_PRECONDITION),
    ),
    Line(
        "ImportTargets empty", lambda w: req(command(commands_pb2.ImportTargets())), status(INVALID_ARGUMENT)
    ),
    Line(
        "ImportTargets with one bad entry",
        lambda w: req(
            command(commands_pb2.ImportTargets(targets=[_set_target(), _set_target(score=float("nan"))]))
        ),
        status(INVALID_ARGUMENT),
    ),
    # deadlines (gRPC: the client's timeout; grpc-web: the grpc-timeout header)
    Line(
        "deadline of 1 ns",
        lambda w: req(command(_set_target()), timeout_s=1e-9, grpc_timeout=b"1n"),
        PAST_DEADLINE,
    ),
    Line(
        "deadline 0", lambda w: req(command(_set_target()), timeout_s=0.0, grpc_timeout=b"0m"), PAST_DEADLINE
    ),
    Line("deadline far away", lambda w: req(command(_set_target()), **_FAR), status(OK)),
]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _no_tx(cmd: Message) -> bytes:
    return command_pb2.CommandRequest(command=pack(cmd)).SerializeToString()


# -- QueryBus and ReportBus -----------------------------------------------------------------------


def _live_lines(
    kind: str, wrap: Callable[..., bytes], valid: Message, bad_id: Callable[[str], Message]
) -> list[Line]:
    """The same hostile inputs for a query or report, Watch or Get."""
    other = "targets.v1.TargetCountsByStatus" if kind == "query" else "targets.v1.AllTargets"
    valid_name = valid.DESCRIPTOR.full_name
    foreign = command_pb2.CommandRequest(tx=A_TX, command=pack(_set_target())).SerializeToString()
    return [
        Line("valid", lambda w: req(wrap(valid)), status(OK)),
        Line("empty body", b"", status(INVALID_ARGUMENT)),
        Line("truncated message", lambda w: req(cut(wrap(valid), 12)), status(INVALID_ARGUMENT)),
        Line("garbage bytes", b"\xff\xfe\xfd\xfc" * 8, status(INVALID_ARGUMENT)),
        Line("a CommandRequest instead", foreign, status(INVALID_ARGUMENT)),
        Line("unknown top-level field", lambda w: req(wrap(valid) + UNKNOWN_FIELD), status(OK)),
        Line(
            "unknown field in the parameters",
            lambda w: req(wrap(any_of(valid_name, valid.SerializeToString() + UNKNOWN_FIELD))),
            status(OK),
        ),
        Line(f"no {kind}", lambda w: req(wrap(any_pb2.Any())), status(INVALID_ARGUMENT)),
        Line(
            "type URL without '/'",
            lambda w: req(wrap(any_pb2.Any(type_url=valid_name))),
            status(INVALID_ARGUMENT),
        ),
        Line(f"unknown {kind} type", lambda w: req(wrap(any_of("targets.v1.Nope"))), status(UNIMPLEMENTED)),
        Line(f"the other bus's type as {kind}", lambda w: req(wrap(any_of(other))), status(UNIMPLEMENTED)),
        Line(f"a command type as {kind}", lambda w: req(wrap(pack(_set_target()))), status(UNIMPLEMENTED)),
        Line("1 MB type URL", lambda w: req(wrap(any_pb2.Any(type_url=TYPE_URL_1MB))), status(UNIMPLEMENTED)),
        Line(
            "undecodable parameters",
            lambda w: req(wrap(any_of(valid_name, b"\xff\xff\xff"))),
            status(INVALID_ARGUMENT),
        ),
        Line("id with a NUL", lambda w: req(wrap(bad_id("a\x00b"))), status(INVALID_ARGUMENT)),
        Line("id with a blank", lambda w: req(wrap(bad_id("a b"))), status(INVALID_ARGUMENT)),
        Line("id of 100k characters", lambda w: req(wrap(bad_id(LONG_ID))), status(INVALID_ARGUMENT)),
        Line(
            "message over the message limit",
            lambda w: req(wrap(any_of(valid_name, UNKNOWN_FIELD * (HUGE // 3)))),
            status(RESOURCE_EXHAUSTED),
        ),
        # at_least (docs/errors.md): a fence the service can never reach is refused, not waited for
        # (a 3 s deadline, so a service that waits instead of refusing fails fast)
        Line(
            "at_least on an unknown topic",
            lambda w: req(wrap(valid, at("no.such.Topic")), **_3S),
            status(INVALID_ARGUMENT),
        ),
        Line(
            "at_least with a negative offset",
            lambda w: req(wrap(valid, at(w.topic("targets.v1.Target"), offset=-1)), **_3S),
            status(INVALID_ARGUMENT),
        ),
        Line(
            "at_least with a negative partition",
            lambda w: req(wrap(valid, at(w.topic("targets.v1.Target"), partition=-1)), **_3S),
            status(INVALID_ARGUMENT),
        ),
        Line(
            "at_least far ahead, 1 s deadline",
            lambda w: req(
                wrap(valid, at(w.topic("targets.v1.Target"), offset=10**15)),
                timeout_s=1.0,
                grpc_timeout=b"1S",
            ),
            status(DEADLINE_EXCEEDED),
        ),
        Line(
            "at_least with 10,000 positions",
            lambda w: req(
                wrap(
                    valid,
                    item_pb2.Watermark(
                        positions=[item_pb2.Offset(topic=f"t{i}", offset=1) for i in range(10_000)]
                    ),
                ),
                **_3S,
            ),
            status(INVALID_ARGUMENT),
        ),
        Line(
            "deadline of 1 ns", lambda w: req(wrap(valid), timeout_s=1e-9, grpc_timeout=b"1n"), PAST_DEADLINE
        ),
        Line("deadline far away", lambda w: req(wrap(valid), **_FAR), status(OK)),
    ]


QUERY_LINES = [
    *_live_lines(
        "query", query, queries_pb2.TargetsInZone(zone_id=ZONE), lambda i: queries_pb2.TargetById(id=i)
    ),
    Line(
        "TargetsInZone zone_id with a tab",
        lambda w: req(query(queries_pb2.TargetsInZone(zone_id="z\t"))),
        status(INVALID_ARGUMENT),
    ),
    Line(
        "TargetsByStatus not in the enum",
        lambda w: req(query(queries_pb2.TargetsByStatus(status=77))),  # type: ignore[arg-type]
        status(INVALID_ARGUMENT),
    ),
    Line("TargetById empty id", lambda w: req(query(queries_pb2.TargetById())), status(INVALID_ARGUMENT)),
]
REPORT_LINES = [
    *_live_lines(
        "report", report, reports_pb2.ZoneTotals(zone_id=ZONE), lambda i: reports_pb2.ZoneTotals(zone_id=i)
    ),
    Line("TargetCountsByStatus", lambda w: req(report(reports_pb2.TargetCountsByStatus())), status(OK)),
]


# -- the grpc-web wire (gateway only) -------------------------------------------------------------


def _valid_command() -> bytes:
    return command(_set_target(name="via gateway"))


def _with(**fields: Any) -> Build:
    """A valid command sent with one part of the grpc-web request replaced."""
    return lambda w: Request(message=_valid_command(), **fields)


def _get(target: bytes) -> Build:
    return lambda w: Request(path=target)


def body(data: bytes) -> Request:
    """A request whose HTTP body is exactly `data` (framing included)."""
    return Request(message=b"", body=data)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


WEB = (Via.WEB,)
TEXT = (Via.WEB_TEXT,)
BOTH = (Via.WEB, Via.WEB_TEXT)

GATEWAY: list[tuple[Endpoint, Line]] = [
    # content types: plain HTTP 415, no grpc-web client sent it
    *[
        (
            EXECUTE,
            Line(
                f"content type {ct.decode() or 'empty'}",
                _with(content_type=ct),
                http(415),
                WEB,
            ),
        )
        for ct in (
            b"application/json",
            b"",
            b"application/grpc",
            b"text/plain",
            b"application/grpc-web+json",
            b"multipart/form-data",
        )
    ],
    (
        EXECUTE,
        Line(
            "content type with parameters",
            lambda w: Request(
                message=_valid_command(), content_type=b"application/grpc-web+proto; charset=utf-8"
            ),
            status(OK),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "content type in upper case",
            lambda w: Request(message=_valid_command(), content_type=b"APPLICATION/GRPC-WEB"),
            status(OK),
            WEB,
        ),
    ),
    # framing
    (EXECUTE, Line("no frame", lambda w: body(b""), status(INVALID_ARGUMENT), WEB)),
    (EXECUTE, Line("truncated frame header", lambda w: body(b"\x00\x00\x00"), status(INVALID_ARGUMENT), WEB)),
    (
        EXECUTE,
        Line(
            "frame longer than the body",
            lambda w: body(struct.pack(">BI", 0, 1000) + b"abc"),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "compressed flag",
            lambda w: body(frame(_valid_command(), flag=0x01)),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "unknown flag bits",
            lambda w: body(frame(_valid_command(), flag=0x42)),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "two data frames",
            lambda w: body(frame(_valid_command()) + frame(_valid_command())),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line("100,000 empty frames", lambda w: body(frame(b"") * 100_000), status(INVALID_ARGUMENT), WEB),
    ),
    (EXECUTE, Line("a trailer frame only", lambda w: body(trailer_frame()), status(INVALID_ARGUMENT), WEB)),
    (
        EXECUTE,
        Line(
            "data then a trailer frame",
            lambda w: body(frame(_valid_command()) + trailer_frame()),
            status(OK),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "data then two trailer frames",
            lambda w: body(frame(_valid_command()) + trailer_frame() + trailer_frame()),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "frame header declaring 4 GiB",
            lambda w: body(struct.pack(">BI", 0, 0xFFFFFFFF) + b"x" * 100),
            status(RESOURCE_EXHAUSTED),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "body over the body limit",
            lambda w: body(frame(b"\x0a" * (12 * MiB))),
            status(RESOURCE_EXHAUSTED),
            WEB,
        ),
    ),
    (
        QUERY_WATCH,
        Line(
            "two data frames",
            lambda w: body(frame(query(queries_pb2.AllTargets())) * 2),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        QUERY_WATCH,
        Line(
            "compressed flag",
            lambda w: body(frame(query(queries_pb2.AllTargets()), flag=1)),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        REPORT_WATCH,
        Line(
            "16 MiB of empty frames",
            lambda w: body(frame(b"") * (16 * MiB // 5)),
            status(RESOURCE_EXHAUSTED),
            WEB,
        ),
    ),
    # grpc-web-text
    (EXECUTE, Line("base64 garbage", lambda w: body(b"!!!!****"), status(INVALID_ARGUMENT), TEXT)),
    (
        EXECUTE,
        Line(
            "base64 ending inside a quad",
            lambda w: body(b64(frame(_valid_command()))[:-3]),
            status(INVALID_ARGUMENT),
            TEXT,
        ),
    ),
    (
        EXECUTE,
        Line(
            "binary body sent as text",
            lambda w: body(frame(_valid_command())),
            status(INVALID_ARGUMENT),
            TEXT,
        ),
    ),
    (EXECUTE, Line("1 MiB of AAA=", lambda w: body(b"AAA=" * (MiB // 4)), status(INVALID_ARGUMENT), TEXT)),
    (EXECUTE, Line("16 MiB of AAA=", lambda w: body(b"AAA=" * (4 * MiB)), status(RESOURCE_EXHAUSTED), TEXT)),
    (
        EXECUTE,
        Line(
            "base64 with line breaks",
            lambda w: body(_with_breaks(b64(frame(_valid_command())))),
            status(OK),
            TEXT,
        ),
    ),
    (
        EXECUTE,
        Line(
            "frame and trailer as two padded chunks",
            lambda w: body(b64(frame(_valid_command())) + b64(trailer_frame())),
            status(OK),
            TEXT,
        ),
    ),
    (QUERY_WATCH, Line("base64 garbage", lambda w: body(b"%%%%"), status(INVALID_ARGUMENT), TEXT)),
    # grpc-timeout
    *[
        (
            EXECUTE,
            Line(
                f"grpc-timeout {v.decode(errors='replace')!r}",
                _with(grpc_timeout=v),
                status(INVALID_ARGUMENT),
                BOTH,
            ),
        )
        for v in (b"abc", b"1", b"-1S", b"123456789S", b"1.5S", b"", b"1 S", b"\xff\xfeS")
    ],
    (
        QUERY_WATCH,
        Line(
            "grpc-timeout malformed",
            lambda w: Request(message=query(queries_pb2.AllTargets()), grpc_timeout=b"10x"),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        QUERY_WATCH,
        Line(
            "grpc-timeout 99999999H",
            lambda w: Request(message=query(queries_pb2.AllTargets()), grpc_timeout=b"99999999H"),
            status(OK),
            WEB,
        ),
    ),
    # headers
    (
        EXECUTE,
        Line(
            "x-request-id not ASCII",
            lambda w: Request(message=_valid_command(), headers=((b"x-request-id", "é☃".encode()),)),
            status(INVALID_ARGUMENT),
            BOTH,
        ),
    ),
    (
        EXECUTE,
        Line(
            "traceparent with a Latin-1 byte",
            lambda w: Request(message=_valid_command(), headers=((b"traceparent", b"00-\xff-01"),)),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        QUERY_WATCH,
        Line(
            "x-request-id not ASCII",
            lambda w: Request(
                message=query(queries_pb2.AllTargets()), headers=((b"x-request-id", b"\xc3\xa9"),)
            ),
            status(INVALID_ARGUMENT),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "unlisted header not ASCII",
            lambda w: Request(message=_valid_command(), headers=((b"x-custom", b"\xff\xfe caf\xc3\xa9"),)),
            status(OK),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "unlisted -bin header not base64",
            lambda w: Request(message=_valid_command(), headers=((b"x-thing-bin", b"!!not base64!!"),)),
            status(OK),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "100 unlisted headers",
            lambda w: Request(
                message=_valid_command(), headers=tuple((f"x-h{i}".encode(), b"v" * 50) for i in range(100))
            ),
            status(OK),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "authorization header",
            lambda w: Request(message=_valid_command(), headers=((b"authorization", b"Bearer not.a.jwt"),)),
            status(OK),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "grpc-encoding gzip claimed",
            lambda w: Request(message=_valid_command(), headers=((b"grpc-encoding", b"gzip"),)),
            status(OK),
            WEB,
        ),
    ),
    # paths not in the allow-list
    *[
        (
            EXECUTE,
            Line(
                f"path {p.decode(errors='replace')[:60]}",
                _with(path=p),
                status(UNIMPLEMENTED),
                BOTH,
            ),
        )
        for p in (
            b"/myko.v1.RepoService/Get",
            b"/myko.v1.RepoService/Subscribe",
            b"/myko.v1.RepoService/ReportStatus",
            b"/grpc.health.v1.Health/Check",
            b"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            b"/myko.v1.CommandBus/Nope",
            b"/myko.v1.CommandBus/Execute/extra",
        )
    ],
    (
        EXECUTE,
        Line(
            "path of 4,000 characters",
            lambda w: Request(message=_valid_command(), path=b"/" + b"p" * 4000),
            status(UNIMPLEMENTED),
            WEB,
        ),
    ),
    (
        EXECUTE,
        Line(
            "path with %00",
            lambda w: Request(message=_valid_command(), path=b"/myko.v1.CommandBus/Execute%00"),
            status(UNIMPLEMENTED),
            WEB,
        ),
    ),
]


def _with_breaks(data: bytes) -> bytes:
    return b"\r\n".join(data[i : i + 16] for i in range(0, len(data), 16))


# -- LiveBus/Open ---------------------------------------------------------------------------------


def live(*subscriptions: live_pb2.LiveSubscription) -> bytes:
    return live_pb2.LiveOpen(subscriptions=subscriptions).SerializeToString()


def live_query(sub_id: str, q: Message | any_pb2.Any) -> live_pb2.LiveSubscription:
    packed = q if isinstance(q, any_pb2.Any) else pack(q)
    return live_pb2.LiveSubscription(sub_id=sub_id, query=query_pb2.QueryRequest(query=packed))


def live_report(sub_id: str, r: Message | any_pb2.Any) -> live_pb2.LiveSubscription:
    packed = r if isinstance(r, any_pb2.Any) else pack(r)
    return live_pb2.LiveSubscription(sub_id=sub_id, report=report_pb2.ReportRequest(report=packed))


def open_subs(message: bytes, *sub_ids: str) -> Request:
    return Request(message=message, subs=sub_ids)


_ZONE_Q = queries_pb2.TargetsInZone(zone_id=ZONE)
_ZONE_R = reports_pb2.ZoneTotals(zone_id=ZONE)

LIVE: list[Line] = [
    Line(
        "a query and a report",
        lambda w: open_subs(live(live_query("q", _ZONE_Q), live_report("r", _ZONE_R)), "q", "r"),
        subs(q=OK, r=OK),
        BOTH,
    ),
    Line("no subscriptions", lambda w: req(live()), status(OK), BOTH),
    Line("garbage bytes", b"\xff\xfe\xfd\xfc" * 8, status(INVALID_ARGUMENT), BOTH),
    Line(
        "truncated message",
        lambda w: req(cut(live(live_query("q", _ZONE_Q)), 9)),
        status(INVALID_ARGUMENT),
        BOTH,
    ),
    Line("empty sub_id", lambda w: req(live(live_query("", _ZONE_Q))), status(INVALID_ARGUMENT), BOTH),
    Line(
        "duplicate sub_id",
        lambda w: req(live(live_query("s", _ZONE_Q), live_report("s", _ZONE_R))),
        status(INVALID_ARGUMENT),
        BOTH,
    ),
    Line(
        "sub_id of 100k characters",
        lambda w: req(live(live_query("s" * 100_000, _ZONE_Q))),
        status(INVALID_ARGUMENT),
        WEB,
    ),
    Line(
        "neither query nor report",
        lambda w: req(live(live_pb2.LiveSubscription(sub_id="s"))),
        status(INVALID_ARGUMENT),
        WEB,
    ),
    Line(
        "257 subscriptions",
        lambda w: req(live(*[live_query(f"s{i}", _ZONE_Q) for i in range(257)])),
        status(RESOURCE_EXHAUSTED),
        WEB,
    ),
    Line(
        "1,000,000 empty subscriptions",
        lambda w: req(b"\x0a\x00" * 1_000_000),
        status(RESOURCE_EXHAUSTED),
        WEB,
    ),
    Line(
        "256 identical subscriptions",
        lambda w: open_subs(live(*[live_query(f"s{i}", _ZONE_Q) for i in range(256)]), "s0", "s255"),
        subs(s0=OK, s255=OK),
        WEB,
    ),
    Line(
        "unknown query type beside a good one",
        lambda w: open_subs(
            live(live_query("bad", any_of("targets.v1.Nope")), live_query("good", _ZONE_Q)), "bad", "good"
        ),
        subs(bad=UNIMPLEMENTED, good=OK),
        BOTH,
    ),
    Line(
        "query id with a NUL",
        lambda w: open_subs(live(live_query("bad", queries_pb2.TargetById(id="\x00"))), "bad"),
        subs(bad=INVALID_ARGUMENT),
        WEB,
    ),
    Line(
        "1 MB type URL",
        lambda w: open_subs(live(live_query("bad", any_pb2.Any(type_url=TYPE_URL_1MB))), "bad"),
        subs(bad=UNIMPLEMENTED),
        WEB,
    ),
    Line(
        "report type as a query",
        lambda w: open_subs(live(live_query("bad", _ZONE_R)), "bad"),
        subs(bad=UNIMPLEMENTED),
        WEB,
    ),
    Line(
        "unknown fields in the parameters",
        lambda w: open_subs(
            live(
                live_query(
                    "q", any_of("targets.v1.TargetsInZone", _ZONE_Q.SerializeToString() + UNKNOWN_FIELD)
                )
            ),
            "q",
        ),
        subs(q=OK),
        WEB,
    ),
    Line(
        "over the message limit", lambda w: req(UNKNOWN_FIELD * (HUGE // 3)), status(RESOURCE_EXHAUSTED), WEB
    ),
]


# -- GET (the gateway's file server) --------------------------------------------------------------

GET: list[tuple[str, bytes, Expect]] = [
    ("healthz", b"/healthz", http(200)),
    ("%00", b"/%00", http(404)),
    ("%00 in a directory", b"/assets/%00.js", http(404)),
    ("parent directories", b"/../../../../etc/passwd", http(404)),
    ("encoded parent directories", b"/..%2f..%2f..%2fetc%2fpasswd", http(404)),
    ("%ff", b"/%ff", http(404)),
    ("name of 4,000 characters", b"/" + b"a" * 4000, http(404)),
    ("raw NUL byte", b"/a\x00b", http(400)),
    ("raw byte 0xff", b"/\xff", http(400)),
    ("raw byte 0xff after 4,000 characters", b"/" + b"a" * 4000 + b"\xff", http(400)),
    ("RepoService", b"/myko.v1.RepoService/Get", http(404)),
]


# -- the table ------------------------------------------------------------------------------------


def _as_build(b: Build | bytes) -> Build:
    if isinstance(b, bytes):
        data = b
        return lambda w: Request(message=data)
    return b


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for endpoint, lines in (
        (EXECUTE, COMMAND),
        (QUERY_WATCH, QUERY_LINES),
        (QUERY_GET, QUERY_LINES),
        (REPORT_WATCH, REPORT_LINES),
        (REPORT_GET, REPORT_LINES),
        (LIVE_OPEN, LIVE),
    ):
        for line in lines:
            for via in line.vias:
                if endpoint is LIVE_OPEN and via is Via.GRPC:
                    # These expectations are the gateway's (query_svc answers a report
                    # subscription UNIMPLEMENTED); tests/test_live_streams.py covers query_svc's.
                    continue
                cases.append(Case(endpoint, via, line.name, _as_build(line.build), line.expect, line.wait_s))
    for endpoint, line in GATEWAY:
        for via in line.vias:
            cases.append(Case(endpoint, via, line.name, _as_build(line.build), line.expect, line.wait_s))
    for name, target, expect in GET:
        cases.append(Case(Endpoint("GET", "", False), Via.GET, name, _get(target), expect))
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return cases


# -- the same table in docs/errors.md -------------------------------------------------------------


def code_name(code: int) -> str:
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return str(c.name)
    return str(code)


def _status_text(e: Expect) -> str:
    if e.code is None:
        return f"HTTP {e.http}"
    if e.subs:
        return ", ".join(f"`{k}`: `{code_name(v)}`" for k, v in e.subs) + " (per subscription)"
    text = f"`{code_name(e.code)}`"
    if e.or_code is not None:
        text += f" (or `{code_name(e.or_code)}`: the deadline races the answer)"
    return text


def _ways(vias: Sequence[Via]) -> str:
    return ", ".join("binary" if v is Via.WEB else "text" for v in vias)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def doc_tables() -> str:
    """The case table as docs/errors.md shows it ("Hostile-input cases"); a test keeps them equal.

    Print it with `python -m hostile.cases` (PYTHONPATH=.:tests:examples/targets).
    """
    out = ["### CommandBus/Execute", "", "Straight over gRPC, as grpc-web and as grpc-web-text.", ""]
    out += ["| input | status |", "| --- | --- |"]
    out += [f"| {_cell(line.name)} | {_status_text(line.expect)} |" for line in COMMAND]
    queries = {line.name: line for line in QUERY_LINES}
    reports = {line.name: line for line in REPORT_LINES}
    out += ["", "### QueryBus and ReportBus, Watch and Get", ""]
    out += [
        "Each of the four methods, straight over gRPC, as grpc-web and as grpc-web-text. The",
        "ids are `TargetById.id` (queries) and `ZoneTotals.zone_id` (reports).",
        "",
        "| input | query | report |",
        "| --- | --- | --- |",
    ]
    for name in dict.fromkeys([*queries, *reports]):
        q = _status_text(queries[name].expect) if name in queries else "—"
        r = _status_text(reports[name].expect) if name in reports else "—"
        out.append(f"| {_cell(name)} | {q} | {r} |")
    out += [
        "",
        "### The grpc-web wire (gateway)",
        "",
        "| method | input | as | status |",
        "| --- | --- | --- | --- |",
    ]
    out += [
        f"| {ep.name} | {_cell(line.name)} | {_ways(line.vias)} | {_status_text(line.expect)} |"
        for ep, line in GATEWAY
    ]
    out += ["", "### LiveBus/Open (gateway)", "", "| input | as | status |", "| --- | --- | --- |"]
    out += [f"| {_cell(line.name)} | {_ways(line.vias)} | {_status_text(line.expect)} |" for line in LIVE]
    out += ["", "### GET (the gateway's file server)", "", "| input | path | status |", "| --- | --- | --- |"]
    for name, target, expect in GET:
        shown = target[:40].decode("latin-1").encode("unicode_escape").decode() + (
            "..." if len(target) > 40 else ""
        )
        out.append(f"| {_cell(name)} | `{_cell(shown)}` | {_status_text(expect)} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(doc_tables(), end="")
