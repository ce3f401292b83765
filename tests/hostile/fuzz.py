"""Hypothesis strategies for hostile requests: what a fuzzer, a bug or an attacker sends.

A request is a body for one of the public endpoints (random bytes, a valid
message with random field values, or such a message mutated byte by byte),
sent one of three ways: straight over gRPC with random metadata and deadline,
or through the gateway as grpc-web binary or text with random framing, base64
damage and headers. A few are gateway GETs of random paths.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass
from typing import Any

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

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints a failing batch with IPython-style pretty printing.
        printer.text(repr(self))

    def __repr__(self) -> str:
        r = self.request
        parts = [f"{self.via.value}:{self.endpoint.name}", self.how, f"message={_show(r.message)}"]
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

# Ids a fuzzer would try: plausible ones, the seeded ones, and hostile ones.
_IDS = st.one_of(
    st.sampled_from(["", "t1", "hostile-t1", "hostile-z1", "a b", "a\x00b", "\t", "../x", "é", "\u202e"]),
    st.text(max_size=20),
    st.builds(lambda c, n: c * n, st.sampled_from(["i", "\x00", " ", "é"]), st.integers(100, 20_000)),
)
_TEXT = st.one_of(
    st.text(max_size=30),
    st.builds(lambda c, n: c * n, st.sampled_from(["n", "\x1b", "\u202e", "☃"]), st.integers(150, 5_000)),
)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
_STATUS = st.integers(-5, 10)


def _tx() -> st.SearchStrategy[str]:
    return st.one_of(
        st.uuids().map(str),
        st.uuids().map(lambda u: str(u).upper()),
        st.uuids().map(lambda u: "urn:uuid:" + str(u)),
        st.uuids().map(lambda u: "{" + str(u) + "}"),
        st.uuids().map(lambda u: u.hex),
        st.text(max_size=40),
        st.just(""),
    )


def _set_target() -> st.SearchStrategy[commands_pb2.SetTarget]:
    return st.builds(
        commands_pb2.SetTarget,
        id=_IDS,
        name=_TEXT,
        status=_STATUS,
        score=_FLOAT,
        tags=st.lists(_TEXT, max_size=40),
        zone_id=_IDS,
        expected_version=st.integers(0, 2**64 - 1),
    )


_COMMANDS: st.SearchStrategy[Message] = st.one_of(
    _set_target(),
    st.builds(commands_pb2.DeleteTarget, id=_IDS),
    st.builds(commands_pb2.RecordHits, id=_IDS, count=_INT64),
    st.builds(commands_pb2.ImportTargets, targets=st.lists(_set_target(), max_size=5)),
    st.builds(commands_pb2.SetZone, id=_IDS, name=_TEXT, description=_TEXT),
    st.builds(commands_pb2.DeleteZone, id=_IDS),
)
_QUERIES: st.SearchStrategy[Message] = st.one_of(
    st.builds(queries_pb2.AllTargets),
    st.builds(queries_pb2.TargetsByStatus, status=_STATUS),
    st.builds(queries_pb2.TargetById, id=_IDS),
    st.builds(queries_pb2.TargetsInZone, zone_id=_IDS),
    st.builds(queries_pb2.AllZones),
)
_REPORTS: st.SearchStrategy[Message] = st.one_of(
    st.builds(reports_pb2.TargetCountsByStatus),
    st.builds(reports_pb2.ZoneTotals, zone_id=_IDS),
)
_TYPE_NAMES = st.one_of(
    st.sampled_from(
        [
            "targets.v1.SetTarget",
            "targets.v1.AllTargets",
            "targets.v1.ZoneTotals",
            "targets.v1.Nope",
            "myko.v1.CommandRequest",
            "",
        ]
    ),
    st.text(max_size=40),
)


@st.composite
def _packed(draw: st.DrawFn, messages: st.SearchStrategy[Message]) -> any_pb2.Any:
    """An Any: usually the message as it is, else with a foreign type URL or payload."""
    msg = draw(messages)
    out = any_pb2.Any()
    out.Pack(msg)
    choice = draw(st.integers(0, 9))
    if choice == 0:
        out.type_url = draw(st.sampled_from(["type.googleapis.com/", "", "x/", "/"])) + draw(_TYPE_NAMES)
    elif choice == 1:
        out.type_url = draw(_TYPE_NAMES)  # often without '/'
    elif choice == 2:
        out.value = draw(st.binary(max_size=64))
    elif choice == 3:
        out.value += b"\x98\x06" + bytes([draw(st.integers(0, 127))])  # an unknown field
    return out


@st.composite
def _watermark(draw: st.DrawFn, world: World) -> item_pb2.Watermark | None:
    if draw(st.integers(0, 9)) != 0:
        return None
    topics = st.one_of(
        st.sampled_from([world.topic("targets.v1.Target"), world.topic("targets.v1.Zone"), "no.such.Topic", ""]),
        st.text(max_size=20),
    )
    positions = draw(
        st.lists(
            # Mostly offsets the topics have reached: a fence never reached holds
            # its request (and so its batch) until the deadline.
            st.builds(
                item_pb2.Offset,
                topic=topics,
                partition=st.integers(-3, 5),
                offset=st.one_of(st.integers(-5, 20), st.just(10**12)),
            ),
            max_size=4,
        )
    )
    return item_pb2.Watermark(positions=positions)


@st.composite
def valid_shape(draw: st.DrawFn, endpoint: Endpoint, world: World) -> tuple[bytes, bool]:
    """A request message of the endpoint's type with random field values; and whether it fences."""
    if endpoint is EXECUTE:
        return command_pb2.CommandRequest(tx=draw(_tx()), command=draw(_packed(_COMMANDS))).SerializeToString(), False
    if endpoint in (QUERY_WATCH, QUERY_GET):
        wm = draw(_watermark(world))
        return query_pb2.QueryRequest(query=draw(_packed(_QUERIES)), at_least=wm).SerializeToString(), wm is not None
    if endpoint in (REPORT_WATCH, REPORT_GET):
        wm = draw(_watermark(world))
        return report_pb2.ReportRequest(report=draw(_packed(_REPORTS)), at_least=wm).SerializeToString(), wm is not None
    subs = []
    for i in range(draw(st.integers(0, 300) if draw(st.integers(0, 19)) == 0 else st.integers(0, 4))):
        sub_id = draw(st.one_of(st.just(f"s{i}"), st.text(max_size=8)))
        if draw(st.booleans()):
            subs.append(live_pb2.LiveSubscription(sub_id=sub_id, query=query_pb2.QueryRequest(query=draw(_packed(_QUERIES)))))
        else:
            subs.append(live_pb2.LiveSubscription(sub_id=sub_id, report=report_pb2.ReportRequest(report=draw(_packed(_REPORTS)))))
    return live_pb2.LiveOpen(subscriptions=subs).SerializeToString(), False


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few byte-level mutations: flips, overwrites, inserts, cuts, repeats."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 5))
        pos = draw(st.integers(0, max(0, len(out))))
        if op == 0 and out:
            i = min(pos, len(out) - 1)
            out[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and out:
            out[min(pos, len(out) - 1)] = draw(st.integers(0, 255))
        elif op == 2:
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == 3:
            del out[pos : pos + draw(st.integers(1, 16))]
        elif op == 4:
            del out[pos:]
        else:
            out[pos:pos] = out[pos : pos + draw(st.integers(1, 32))] * draw(st.integers(1, 50))
    return bytes(out)


@st.composite
def message_bytes(draw: st.DrawFn, endpoint: Endpoint, world: World) -> tuple[bytes, str, bool]:
    """(request message, how it was made, whether it may wait on a fence)."""
    kind = draw(st.integers(0, 99))
    if kind < 40:
        data, fences = draw(valid_shape(endpoint, world))
        return data, "structured", fences
    if kind < 80:
        data, fences = draw(valid_shape(endpoint, world))
        return draw(mutated(data)), "mutated", True
    if kind < 98:
        return draw(st.binary(max_size=512)), "random bytes", True
    # Large: at, under and over the gateway's (4 MiB) and the services' (8 MiB) limits.
    size = draw(st.sampled_from([64 * 1024, MiB, 4 * MiB + 1, 9 * MiB]))
    fill = draw(st.sampled_from([b"\x00", b"\x0a", b"\xff", b"\x98\x06\x01"]))
    return (fill * (size // len(fill) + 1))[:size], f"large {size}", False


# -- transports -----------------------------------------------------------------------------------

_HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
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
            b"content-type",
            b"te",
        ]
    ),
    st.from_regex(rb"\Ax-[a-z0-9-]{1,20}\Z", fullmatch=True),
)
# Header values: any bytes a client can put on one line (no CR or LF: those would end the header).
_HEADER_VALUES = st.one_of(
    st.binary(max_size=64).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.text(max_size=32).map(lambda t: t.replace("\r", "").replace("\n", "").encode()),
    st.sampled_from([b"", b"\xff\xfe", "é☃".encode(), b"00-abc-01", b"Bearer x.y.z"]),
)
_GRPC_TIMEOUTS = st.one_of(
    st.sampled_from([b"0n", b"1n", b"1m", b"99999999H", b"100000000H", b"1S", b"abc", b"-1S", b"", b"1.5S"]),
    st.from_regex(rb"\A[0-9]{1,10}[HMSmun]\Z", fullmatch=True),
    st.binary(max_size=12).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
)
_CONTENT_TYPES = st.sampled_from(
    [
        b"application/grpc-web",
        b"application/grpc-web+proto",
        b"application/grpc-web-text",
        b"application/grpc-web-text+proto",
        b"application/json",
        b"",
        b"application/grpc",
        b"APPLICATION/GRPC-WEB; charset=\xff",
    ]
)


def _frame(payload: bytes, flag: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">BI", flag, len(payload) if length is None else length) + payload


@st.composite
def framed(draw: st.DrawFn, message: bytes) -> tuple[bytes, str]:
    """The grpc-web body for `message`: usually one frame, sometimes damaged framing."""
    choice = draw(st.integers(0, 19))
    if choice < 12:
        return _frame(message), "one frame"
    if choice == 12:
        return _frame(message, flag=draw(st.integers(0, 255))), "random flag"
    if choice == 13:
        length = max(0, len(message) + draw(st.integers(-8, 8)))
        return _frame(message, length=min(length, 2**32 - 1)), "wrong length"
    if choice == 14:
        return _frame(message) + _frame(draw(st.binary(max_size=32))), "two frames"
    if choice == 15:
        return _frame(message) + _frame(b"grpc-status: 0\r\n", flag=0x80), "data + trailer"
    if choice == 16:
        return _frame(b"", flag=0x80) * draw(st.integers(1, 3)) + _frame(message), "trailers first"
    if choice == 17:
        return message, "unframed"
    if choice == 18:
        return _frame(b"") * draw(st.integers(2, 20_000)), "many empty frames"
    return _frame(message) + draw(st.binary(min_size=1, max_size=8)), "trailing bytes"


@st.composite
def text_encoded(draw: st.DrawFn, data: bytes) -> tuple[bytes, str]:
    """grpc-web-text for `data`: base64, sometimes split, broken up by blanks, or damaged."""
    choice = draw(st.integers(0, 9))
    encoded = base64.b64encode(data)
    if choice < 6:
        return encoded, "base64"
    if choice == 6:
        cut = draw(st.integers(0, len(data)))
        return base64.b64encode(data[:cut]) + base64.b64encode(data[cut:]), "base64 in two chunks"
    if choice == 7:
        pos = draw(st.integers(0, len(encoded)))
        return encoded[:pos] + draw(st.sampled_from([b" ", b"\r\n", b"\t"])) + encoded[pos:], "base64 with a blank"
    if choice == 8 and encoded:
        pos = draw(st.integers(0, len(encoded) - 1))
        bad = draw(st.sampled_from([b"!", b"=", b"-", b"_", b"\xff", b"*"]))
        return encoded[:pos] + bad + encoded[pos + 1 :], "damaged base64"
    return encoded[: draw(st.integers(0, len(encoded)))], "cut base64"


_GRPC_METADATA = st.lists(
    st.one_of(
        st.tuples(
            st.from_regex(r"\Ax-[a-z0-9-]{1,16}\Z", fullmatch=True),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=64),
        ),
        st.tuples(st.from_regex(r"\Ax-[a-z0-9-]{1,12}-bin\Z", fullmatch=True), st.binary(max_size=64)),
        st.tuples(
            st.sampled_from(["authorization", "traceparent", "x-request-id"]),
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=64),
        ),
    ),
    max_size=6,
)
# A deadline for direct calls: a fence on an unknown topic would otherwise hold a
# request (and its batch) for the services' 10 s cap.
_DIRECT_TIMEOUTS = st.one_of(st.floats(0.001, 3.0), st.just(10 * 365 * 86400.0), st.just(2.0))


@st.composite
def fuzzed(draw: st.DrawFn, world: World) -> Fuzzed:
    if draw(st.integers(0, 49)) == 0:
        path = b"/" + draw(st.binary(max_size=64)).replace(b"\r", b"").replace(b"\n", b"").replace(b" ", b"")
        return Fuzzed(GET_ENDPOINT, Via.GET, Request(path=path), "GET")
    via = draw(st.sampled_from([Via.GRPC, Via.WEB, Via.WEB_TEXT]))
    endpoint = draw(st.sampled_from(BUS_ENDPOINTS if via is Via.GRPC else (*BUS_ENDPOINTS, LIVE_OPEN)))
    message, how, fences = draw(message_bytes(endpoint, world))
    if via is Via.GRPC:
        timeout = draw(_DIRECT_TIMEOUTS)
        if fences and timeout > 1.0:
            timeout = 1.0
        metadata = tuple(draw(_GRPC_METADATA))
        return Fuzzed(endpoint, via, Request(message=message, timeout_s=timeout, metadata=metadata), how)
    body, framing = draw(framed(message))
    if via is Via.WEB_TEXT:
        body, encoding = draw(text_encoded(body))
        framing += ", " + encoding
    headers = tuple(draw(st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=5)))
    content_type = draw(st.none() | _CONTENT_TYPES) if draw(st.integers(0, 9)) == 0 else None
    grpc_timeout = draw(_GRPC_TIMEOUTS) if draw(st.integers(0, 4)) == 0 else None
    if fences and grpc_timeout is None:
        grpc_timeout = b"1S"
    path = None
    if draw(st.integers(0, 49)) == 0:
        path = draw(st.sampled_from([b"/myko.v1.RepoService/Get", b"/", b"/x", b"/myko.v1.CommandBus/execute"]))
    request = Request(
        message=message,
        body=body,
        headers=headers,
        content_type=content_type,
        grpc_timeout=grpc_timeout,
        path=path,
    )
    return Fuzzed(endpoint, via, request, f"{how}; {framing}")
