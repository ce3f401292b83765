"""The status contract for hostile or careless input, against the real services (issue 12).

- finding 7: a handler's own failure is INTERNAL with a reference and no internal
  text; an overflowing RecordHits is FAILED_PRECONDITION; a Get with no result in
  time is DEADLINE_EXCEEDED; client text echoed in a message is cut short;
- finding 8: parameters carrying unknown fields share the evaluation of the same
  parameters without them;
- finding 10: one set of rules for ids, names and tx, whichever command, query
  or report they reach.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

import grpc
import pytest
import reactivex
from conftest import InProcessStack
from google.protobuf import any_pb2
from google.protobuf.message import Message
from myko_client import items, new_tx, pack
from reactivex import Observable
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

from myko import App, CommandContext, Store
from myko.v1 import command_pb2, query_pb2, report_pb2

pytestmark = pytest.mark.kafka

Target = entities_pb2.Target
INTERNAL = re.compile(r"internal error \(ref ([0-9a-f]{12})\)")
SECRET = "hunter2"
# Field 99 as a varint: a field no Myko message declares.
UNKNOWN_FIELD = b"\x98\x06\x01"


async def _code(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def _get_raw(stack: InProcessStack, packed: any_pb2.Any) -> query_pb2.QueryResult:
    call = stack.clients.query.unary_unary(
        "/myko.v1.QueryBus/Get",
        request_serializer=query_pb2.QueryRequest.SerializeToString,
        response_deserializer=query_pb2.QueryResult.FromString,
    )
    result: query_pb2.QueryResult = await call(query_pb2.QueryRequest(query=packed), timeout=15)
    return result


# --- finding 8: canonical evaluation keys ------------------------------------


async def test_unknown_fields_do_not_split_an_evaluation(stack: InProcessStack) -> None:
    zone = await stack.clients.execute(commands_pb2.SetZone(name="north"))
    plain = pack(queries_pb2.TargetsInZone(zone_id=zone.events[0].id))
    padded = any_pb2.Any(type_url=plain.type_url, value=plain.value + UNKNOWN_FIELD)
    streams = [_watch_raw(stack, p) for p in (plain, padded, padded)]
    report_streams = [
        _watch_report_raw(stack, any_pb2.Any(type_url=r.type_url, value=r.value + extra))
        for r in [pack(reports_pb2.ZoneTotals())]
        for extra in (b"", UNKNOWN_FIELD)
    ]
    try:
        async with asyncio.timeout(10):
            firsts = [await s.read() for s in streams]
            for s in report_streams:
                await s.read()
        # One evaluation for all three, and the same array for each. The bytes may
        # differ in the watermark alone: a stream that joins after the mirror has
        # read further (say, the zone's own commit marker) gets the same result
        # stamped with the newer position.
        assert len(stack.query.hub) == 1
        results = [query_pb2.QueryResult.FromString(cast(bytes, f)) for f in firsts]
        assert len({(r.query_type, tuple(i.value for i in r.items)) for r in results}) == 1
        assert len(stack.report.hub) == 1
    finally:
        for s in [*streams, *report_streams]:
            s.cancel()


def _watch_raw(stack: InProcessStack, packed: any_pb2.Any) -> grpc.aio.UnaryStreamCall[Any, Any]:
    """Results as the bytes the service sent."""
    call = stack.clients.query.unary_stream(
        "/myko.v1.QueryBus/Watch",
        request_serializer=query_pb2.QueryRequest.SerializeToString,
        response_deserializer=None,
    )
    return call(query_pb2.QueryRequest(query=packed))


def _watch_report_raw(stack: InProcessStack, packed: any_pb2.Any) -> grpc.aio.UnaryStreamCall[Any, Any]:
    assert stack.clients.report is not None
    call = stack.clients.report.unary_stream(
        "/myko.v1.ReportBus/Watch",
        request_serializer=report_pb2.ReportRequest.SerializeToString,
        response_deserializer=report_pb2.ReportResult.FromString,
    )
    return call(report_pb2.ReportRequest(report=packed))


# --- finding 7: the status contract -------------------------------------------


async def test_record_hits_past_the_counter_is_failed_precondition(stack: InProcessStack) -> None:
    created = await stack.clients.execute(commands_pb2.SetTarget(name="busy"))
    tid = created.events[0].id
    await stack.clients.execute(commands_pb2.RecordHits(id=tid, count=2**63 - 2))
    err = await _code(stack.clients.execute(commands_pb2.RecordHits(id=tid, count=2)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (err.details() or "").startswith("count: ")
    # The counter is where it was, and can still take what fits.
    done = await stack.clients.execute(commands_pb2.RecordHits(id=tid, count=1))
    got = await stack.clients.get(queries_pb2.TargetById(id=tid), at_least=done.visible_at)
    assert items(got, Target)[0].hit_count == 2**63 - 1


async def test_echoed_client_text_is_cut_short(stack: InProcessStack) -> None:
    huge = "type.googleapis.com/" + "x" * 1_000_000
    for call in (
        stack.clients.execute_raw(
            command_pb2.CommandRequest(tx=new_tx(), command=any_pb2.Any(type_url=huge))
        ),
        _get_raw(stack, any_pb2.Any(type_url=huge)),
        stack.clients.execute_raw(
            command_pb2.CommandRequest(tx="y" * 1_000_000, command=pack(commands_pb2.SetTarget(name="a")))
        ),
        stack.clients.execute(commands_pb2.SetZone(id="z" * 100_000, name="a")),
    ):
        err = await _code(call)
        assert err.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INVALID_ARGUMENT)
        assert len(err.details() or "") < 300, (err.details() or "")[:100]


def _hostile_app() -> App:
    """Handlers that fail the ways a buggy application does."""
    app = App("hostile")
    app.entity(Target)
    app.entity(entities_pb2.Zone)

    @app.command(commands_pb2.SetTarget)
    def crash(cmd: commands_pb2.SetTarget, ctx: CommandContext) -> None:
        raise RuntimeError(f"db password is {SECRET}")

    @app.command(commands_pb2.SetZone)
    def bad_id(cmd: commands_pb2.SetZone, ctx: CommandContext) -> None:
        zone = entities_pb2.Zone(name="z")
        zone.item.id = cmd.id  # no check of its own: the framework's applies
        ctx.set(zone)

    @app.query(queries_pb2.AllTargets)
    def crash_at_start(q: queries_pb2.AllTargets, repos: Store) -> Observable[list[Target]]:
        raise KeyError(SECRET)

    @app.query(queries_pb2.TargetById)
    def crash_later(q: queries_pb2.TargetById, repos: Store) -> Observable[list[Target]]:
        return reactivex.throw(ValueError(SECRET))

    @app.query(queries_pb2.AllZones)
    def silent(q: queries_pb2.AllZones, repos: Store) -> Observable[list[entities_pb2.Zone]]:
        return reactivex.never()

    return app


@pytest.fixture
async def hostile(myko_env: dict[str, str]) -> AsyncIterator[InProcessStack]:
    s = await InProcessStack.start(myko_env, _hostile_app())
    try:
        yield s
    finally:
        await s.stop()


async def test_handler_failures_are_internal_with_a_reference_only(
    hostile: InProcessStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    failures = [
        await _code(hostile.clients.execute(commands_pb2.SetTarget(name="a"))),
        await _code(hostile.clients.get(queries_pb2.AllTargets())),
        await _code(hostile.clients.get(queries_pb2.TargetById(id="t1"))),
        await _code(hostile.clients.watch(queries_pb2.TargetById(id="t2")).read()),
    ]
    for err in failures:
        assert err.code() == grpc.StatusCode.INTERNAL
        match = INTERNAL.fullmatch(err.details() or "")
        assert match, err.details()
        # The caller's reference finds the details in the service's log.
        logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
        assert logged and SECRET in str(logged[0].exc_info[1] if logged[0].exc_info else "")


async def test_the_framework_checks_every_written_id(hostile: InProcessStack) -> None:
    for bad in ["has blank", "ctl\x00", "x" * 129]:
        err = await _code(hostile.clients.execute(commands_pb2.SetZone(id=bad)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.details() or "").startswith("id: ")
    await hostile.clients.execute(commands_pb2.SetZone(id="fine:id-1"))


async def test_get_without_a_result_in_time_is_deadline_exceeded(hostile: InProcessStack) -> None:
    # The service's own limit (10 s) is nearer than the caller's deadline: it answers.
    err = await _code(hostile.clients.get(queries_pb2.AllZones(), timeout_s=20))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no result" in (err.details() or "")
    # A nearer deadline of the caller's is honoured, and nothing stays behind.
    err = await _code(hostile.clients.get(queries_pb2.AllZones(), timeout_s=1))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    async with asyncio.timeout(3):
        while len(hostile.query.hub):  # noqa: ASYNC110 - polling a plain counter
            await asyncio.sleep(0.05)


# --- finding 10: one set of input rules ---------------------------------------

BAD_IDS = ["a b", " lead", "tab\there", "nul\x00", "new\nline", "x" * 100_000, "é"]


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda v: repr(v[:12]))
async def test_an_id_refused_anywhere_is_refused_everywhere(stack: InProcessStack, bad: str) -> None:
    writes: list[Message] = [
        commands_pb2.SetTarget(id=bad, name="t"),
        commands_pb2.SetZone(id=bad, name="z"),
        commands_pb2.SetTarget(name="t", zone_id=bad),
        commands_pb2.DeleteTarget(id=bad),
        commands_pb2.DeleteZone(id=bad),
        commands_pb2.RecordHits(id=bad, count=1),
        commands_pb2.ImportTargets(targets=[commands_pb2.SetTarget(id=bad, name="t")]),
    ]
    for cmd in writes:
        err = await _code(stack.clients.execute(cmd))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, cmd
        assert re.match(r"(targets\[0\]\.)?(zone_)?id: ", err.details() or ""), err.details()
    for q in (queries_pb2.TargetById(id=bad), queries_pb2.TargetsInZone(zone_id=bad)):
        err = await _code(stack.clients.get(q))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    err = await _code(stack.clients.get_report(reports_pb2.ZoneTotals(zone_id=bad)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_id_accepted_anywhere_is_accepted_everywhere(stack: InProcessStack) -> None:
    zid = "zone:a.b~c@d-e_f"
    zone = await stack.clients.execute(commands_pb2.SetZone(id=zid, name="odd but fine"))
    target = await stack.clients.execute(commands_pb2.SetTarget(id="t:1", name="t", zone_id=zid))
    got = await stack.clients.get(queries_pb2.TargetsInZone(zone_id=zid), at_least=target.visible_at)
    assert [t.item.id for t in items(got, Target)] == ["t:1"]
    totals = await stack.clients.get_report(reports_pb2.ZoneTotals(zone_id=zid))
    value = reports_pb2.ZoneTotalsValue()
    totals.value.Unpack(value)
    assert [z.zone_id for z in value.zones] == [zid]
    await stack.clients.execute(commands_pb2.DeleteZone(id=zid))
    assert zone.events[0].id == zid


@pytest.mark.parametrize(
    "name", ["nul\x00", "bell\x07", "two\nlines", "rtl\u202eoverride", "x" * 201, "   "], ids=repr
)
async def test_names_with_control_characters_are_refused(stack: InProcessStack, name: str) -> None:
    for cmd in (commands_pb2.SetZone(name=name), commands_pb2.SetTarget(name=name)):
        err = await _code(stack.clients.execute(cmd))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.details() or "").startswith("name: ")


async def test_tx_must_be_canonical_uuid_text(stack: InProcessStack) -> None:
    u = new_tx()
    flat = u.replace("-", "")
    for bad in ["urn:uuid:" + u, "{" + u + "}", flat, "urn:" + flat, "{" + flat + "--}", u + " "]:
        err = await _code(
            stack.clients.execute_raw(
                command_pb2.CommandRequest(tx=bad, command=pack(commands_pb2.SetZone(name="z")))
            )
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.details() or "").startswith("tx: ")
    # Upper case is the same tx, normalised: a retry in either case takes effect once.
    first = await stack.clients.execute(commands_pb2.SetZone(name="once"), tx=u.upper())
    again = await stack.clients.execute(commands_pb2.SetZone(name="once"), tx=u)
    assert first == again and first.tx == u
