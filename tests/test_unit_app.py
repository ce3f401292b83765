"""Unit tests (no broker): registration checks, relations' handlers and checks, status <-> error mapping."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import pytest
import reactivex
from google.protobuf import any_pb2
from reactivex import Observable
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

from myko import App, CommandContext, Handlers, Store
from myko.conflicts import ChangeTracker
from myko.contract import Query, Report, query_result, report_result
from myko.errors import (
    ConfigError,
    Conflict,
    DeadlineExceeded,
    InvalidArgument,
    MykoError,
    PermissionDenied,
    Rejected,
    ResourceExhausted,
    ServerError,
    Unauthenticated,
    Unavailable,
    UnknownType,
)
from myko.events import SET
from myko.relations import CASCADE_BATCH
from myko.status import code_of, error_of
from myko.v1 import item_pb2, relations_pb2
from myko.watermark import Watermark

Target = entities_pb2.Target
Zone = entities_pb2.Zone


# --- the contract ---------------------------------------------------------------
def test_result_types_come_from_the_proto_options() -> None:
    assert query_result(queries_pb2.AllZones) is Zone
    assert report_result(reports_pb2.ZoneTotals) is reports_pb2.ZoneTotalsValue
    assert query_result(commands_pb2.SetTarget) is None
    # The static markers agree with the options at run time.
    assert isinstance(queries_pb2.AllTargets(), Query) and not isinstance(queries_pb2.AllTargets(), Report)
    assert issubclass(reports_pb2.ZoneTotals, Report) and not isinstance(commands_pb2.SetTarget(), Query)


# --- registration ---------------------------------------------------------------
def test_a_query_or_report_without_its_result_option_is_a_config_error() -> None:
    app = App("t")
    with pytest.raises(ConfigError, match=r"query targets\.v1\.SetTarget declares no result type"):
        app.query(commands_pb2.SetTarget)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"\(myko\.v1\.report\)"):
        app.report(queries_pb2.AllTargets)  # type: ignore[arg-type]


def test_declared_query_indexes_must_be_singular_scalar_fields_of_the_result() -> None:
    part = Handlers()
    part.query(queries_pb2.TargetsInZone, index=["zone_id", "item.version"])
    part.query(queries_pb2.AllZones, index=["name"])
    app = App("t")
    app.include(part)
    # Collected per result entity, for the query/report services' stores.
    assert app.declared_indexes == {
        "targets.v1.Target": {"zone_id", "item.version"},
        "targets.v1.Zone": {"name"},
    }
    for bad, why in [
        ("zone", "not a singular field"),
        ("tags", "not a singular field"),  # repeated
        ("item", "must end on a scalar"),  # a message
        ("name.x", "must end on a scalar"),  # past a scalar
    ]:
        with pytest.raises(ConfigError, match=rf"TargetsInZone: index '{bad}' .*{why}"):
            Handlers().query(queries_pb2.TargetsInZone, index=[bad])


def test_handler_annotations_must_agree_with_the_registration() -> None:
    app = App("t")

    def wrong_command(cmd: commands_pb2.SetZone, ctx: CommandContext) -> None: ...

    with pytest.raises(
        ConfigError, match=r"takes targets\.v1\.SetZone, but is registered for targets\.v1\.SetTarget"
    ):
        app.command(commands_pb2.SetTarget)(wrong_command)  # type: ignore[arg-type]

    def zones(q: queries_pb2.AllTargets, repos: Store) -> Observable[list[Zone]]:
        return repos.of(Zone).watch()

    with pytest.raises(ConfigError, match=r"returns targets\.v1\.Zone items.*declares targets\.v1\.Target"):
        app.query(queries_pb2.AllTargets)(zones)  # type: ignore[arg-type]

    def counts(r: reports_pb2.ZoneTotals, repos: Store) -> Observable[reports_pb2.StatusCounts]:
        raise NotImplementedError

    with pytest.raises(ConfigError, match=r"StatusCounts value"):
        app.report(reports_pb2.ZoneTotals)(counts)  # type: ignore[arg-type]

    # Right ones register; so do unannotated lambdas (mypy types them from the registration).
    def targets(q: queries_pb2.AllTargets, repos: Store) -> Observable[Sequence[Target]]:
        return repos.of(Target).watch()

    app.query(queries_pb2.AllTargets)(targets)
    app.query(queries_pb2.AllZones)(lambda q, repos: repos.of(Zone).watch())
    # With the framework's own query every App declares (myko/service_status.py).
    assert app.queries.names() == ["myko.v1.ServiceStatuses", "targets.v1.AllTargets", "targets.v1.AllZones"]


def test_parts_are_included_and_clash_loudly() -> None:
    part = Handlers()
    part.entity(Zone)
    part.command(commands_pb2.SetZone)(lambda cmd, ctx: None)
    part.saga("s", sources=[Zone])(lambda events, repos: reactivex.empty())
    app = App("t")
    app.include(part)
    # Every App has the framework's Revocation entity (myko/revocation.py).
    assert app.entities.names() == ["myko.v1.Revocation", "myko.v1.ServiceStatus", "targets.v1.Zone"]
    assert app.commands.names() == ["myko.v1.RevokeTokens", "targets.v1.SetZone"]
    assert [s.name for s in app.sagas] == ["s"]
    with pytest.raises(ConfigError, match="two handlers"):
        app.include(part)
    # An App included in another: the framework's own declarations come once.
    outer = App("outer")
    outer.include(app)
    assert outer.queries.names() == ["myko.v1.ServiceStatuses"]
    assert outer.entities.names() == ["myko.v1.Revocation", "myko.v1.ServiceStatus", "targets.v1.Zone"]


def test_relations_must_name_entities_of_the_app() -> None:
    app = App("t")
    app.entity(Target)  # Target.zone_id refers to Zone, which is not declared
    with pytest.raises(ConfigError, match=r"targets\.v1\.Target\.zone_id refers to targets\.v1\.Zone"):
        app.validate()
    app.entity(Zone)
    app.validate()
    assert [s.name for s in app.sagas] == ["cascade.targets.v1.Target.zone_id"]

    other = App("t")
    other.entity(Zone)
    other.ensure(Target, for_each=Zone, build=lambda z: Target(name="p"), name="p")
    with pytest.raises(ConfigError, match=r"ensure 'p': targets\.v1\.Target is not an entity"):
        other.validate()
    with pytest.raises(ConfigError, match="registered twice"):
        other.ensure(Target, for_each=Zone, build=lambda z: Target(name="p"), name="p")


# --- what relations do in command_svc ---------------------------------------------
class _World:
    """The example app over an in-memory store, with a context per command."""

    def __init__(self) -> None:
        from targets import app

        self.app = app
        self.store = Store(app.entities)
        self.offset = 0

    def put(self, entity: Target | Zone) -> None:
        name = entity.DESCRIPTOR.full_name
        packed = any_pb2.Any()
        packed.Pack(entity)
        topic = name
        self.store.apply_events(
            [
                item_pb2.Event(
                    op=SET,
                    type=name,
                    id=entity.item.id,
                    entity=packed,
                    offset=item_pb2.Offset(topic=topic, offset=self.offset),
                )
            ],
            Watermark({(topic, 0): self.offset + 1}),
        )
        self.offset += 1

    def run(
        self, command: commands_pb2.SetTarget | relations_pb2.CascadeDelete | relations_pb2.EnsureChild
    ) -> CommandContext:
        ctx = CommandContext(tx="tx", store=self.store, tracker=ChangeTracker(self.store), source="s")
        reg = self.app.commands.get(command.DESCRIPTOR.full_name)
        assert reg is not None
        reg.handler(command, ctx)
        return ctx


def zone(zone_id: str) -> Zone:
    z = Zone(name=zone_id)
    z.item.id = zone_id
    return z


def target(target_id: str, zone_id: str) -> Target:
    t = Target(name=target_id, zone_id=zone_id)
    t.item.id = target_id
    return t


def test_a_write_naming_a_missing_owner_is_rejected() -> None:
    world = _World()
    with pytest.raises(Rejected, match=r"zone_id: targets\.v1\.Zone z1 does not exist"):
        world.run(commands_pb2.SetTarget(id="t1", name="a", zone_id="z1"))
    world.put(zone("z1"))
    assert [
        k for k, v in world.run(commands_pb2.SetTarget(id="t1", name="a", zone_id="z1")).writes.items()
    ] == [("targets.v1.Target", "t1")]
    # No zone is no reference.
    world.run(commands_pb2.SetTarget(id="t2", name="b"))


def test_cascade_deletes_only_what_still_refers_to_a_deleted_owner() -> None:
    world = _World()
    world.put(zone("other"))
    world.put(target("a", "gone"))
    world.put(target("moved", "other"))
    cmd = relations_pb2.CascadeDelete(
        relation="cascade.targets.v1.Target.zone_id", owner_id="gone", ids=["a", "moved", "never-existed"]
    )
    assert dict(world.run(cmd).writes) == {("targets.v1.Target", "a"): None}
    # The owner exists (again): nothing to cascade.
    world.put(zone("gone"))
    assert dict(world.run(cmd).writes) == {}
    with pytest.raises(InvalidArgument, match="ids"):
        world.run(
            relations_pb2.CascadeDelete(
                relation=cmd.relation, owner_id="x", ids=[str(i) for i in range(CASCADE_BATCH + 1)]
            )
        )
    with pytest.raises(InvalidArgument, match="relation"):
        world.run(relations_pb2.CascadeDelete(relation="nope", owner_id="x"))


def test_ensure_creates_one_child_with_an_id_derived_from_the_owner() -> None:
    from targets.relations import perimeter_of

    world = _World()
    cmd = relations_pb2.EnsureChild(relation="zone-perimeter", owner_id="z1")
    assert dict(world.run(cmd).writes) == {}  # no such zone (deleted before the saga came)
    world.put(zone("z1"))
    writes = world.run(cmd).writes
    child_id = perimeter_of.id_for("z1")
    created = writes[("targets.v1.Target", child_id)]
    assert isinstance(created, Target) and (created.name, created.zone_id) == ("perimeter", "z1")
    world.put(created)
    assert dict(world.run(cmd).writes) == {}  # already there
    assert perimeter_of.id_for("z1") == child_id != perimeter_of.id_for("z2")


# --- statuses and the hierarchy -------------------------------------------------------
@pytest.mark.parametrize(
    "error",
    [
        InvalidArgument("targets[1].name", "must not be empty"),
        UnknownType("command", "x.v1.Nope"),
        Rejected("target t does not exist"),
        Conflict("kept colliding"),
        Unavailable("broker down"),
        DeadlineExceeded("too slow"),
        PermissionDenied("no"),
        Unauthenticated("who?"),
        ResourceExhausted("too many"),
        ServerError("internal error"),
    ],
)
def test_a_status_maps_back_to_the_error_it_came_from(error: MykoError) -> None:
    back = error_of(code_of(error), error.message)
    assert (type(back), back.message, back.retriable) == (type(error), error.message, error.retriable)
    if isinstance(error, InvalidArgument):
        assert isinstance(back, InvalidArgument) and back.field == error.field


def test_statuses_myko_never_sends_map_to_their_nearest_meaning() -> None:
    assert type(error_of(grpc.StatusCode.NOT_FOUND, "gone")) is UnknownType
    assert type(error_of(grpc.StatusCode.UNKNOWN, "")) is ServerError
    assert error_of(grpc.StatusCode.CANCELLED, "shutting down").retriable
    free_text = error_of(grpc.StatusCode.INVALID_ARGUMENT, "request is not valid")
    assert isinstance(free_text, InvalidArgument) and free_text.field == ""
