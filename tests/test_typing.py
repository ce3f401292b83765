"""mypy --strict sees the contract: wrong handlers and wrong uses of results fail, right ones pass.

Runs mypy (with the project's configuration) on two small applications written
to a temporary directory: one where every line marked `# E: <code>` must be
reported with exactly that error code and nothing else, one that must pass.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

WRONG = """
from reactivex import Observable

from myko import App, Client, CommandContext, Store, by_tenant
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

app = App("wrong")


@app.command(commands_pb2.SetTarget)  # E: arg-type
def set_target(cmd: commands_pb2.SetZone, ctx: CommandContext) -> None: ...


@app.query(queries_pb2.AllTargets)  # E: arg-type
def all_targets(q: queries_pb2.AllTargets, repos: Store) -> Observable[list[entities_pb2.Zone]]:
    return repos.of(entities_pb2.Zone).watch()


@app.report(reports_pb2.ZoneTotals)  # E: arg-type
def zone_totals(r: reports_pb2.ZoneTotals, repos: Store) -> Observable[reports_pb2.StatusCounts]:
    raise NotImplementedError


app.query(commands_pb2.SetTarget)  # E: arg-type


# A scoped query's handler takes the caller's scope key; one without it does not fit.
@app.query(queries_pb2.AllZones, scope=by_tenant)  # E: arg-type
def all_zones(q: queries_pb2.AllZones, repos: Store) -> Observable[list[entities_pb2.Zone]]:
    return repos.of(entities_pb2.Zone).watch()


async def use(client: Client) -> None:
    client.watch(commands_pb2.SetTarget())  # E: call-overload
    async for targets in client.watch(queries_pb2.AllTargets()):
        print(targets[0].no_such_field)  # E: attr-defined
    zones: list[entities_pb2.Zone] = await client.get(queries_pb2.AllTargets())  # E: arg-type
    print(zones)
    async with client.live() as live:
        live.watch(commands_pb2.SetTarget())  # E: call-overload
        async for many in live.watch(queries_pb2.AllTargets()):
            print(many[0].no_such_field)  # E: attr-defined
"""

RIGHT = """
from collections.abc import Sequence
from typing import assert_type

import reactivex
from reactivex import Observable

from myko import App, Client, CommandContext, Store, by_tenant, derive, roles
from myko.v1 import command_pb2
from targets.v1 import commands_pb2, entities_pb2, queries_pb2, reports_pb2

Target = entities_pb2.Target
app = App("right")


@app.command(commands_pb2.SetTarget, allow=roles("operator"))
def set_target(cmd: commands_pb2.SetTarget, ctx: CommandContext) -> None:
    print(ctx.principal.subject, ctx.principal.tenant)


@app.query(queries_pb2.AllZones, allow=roles("viewer"), scope=by_tenant)
def all_zones(q: queries_pb2.AllZones, repos: Store, tenant: str) -> Observable[list[entities_pb2.Zone]]:
    return repos.of(entities_pb2.Zone).watch(equal={"tenant": tenant})


@app.command(commands_pb2.DeleteTarget)
async def delete_target(cmd: commands_pb2.DeleteTarget, ctx: CommandContext) -> None: ...


@app.query(queries_pb2.AllTargets)
def all_targets(q: queries_pb2.AllTargets, repos: Store) -> Observable[list[Target]]:
    return repos.of(Target).watch()


# Lambdas: the registration types their arguments; derive() types the inner one.
app.query(queries_pb2.TargetById)(lambda q, repos: repos.of(Target).watch(where=lambda t: t.item.id == q.id))
app.report(reports_pb2.TargetCountsByStatus)(
    lambda r, repos: derive(repos.of(Target).watch(), lambda ts: reports_pb2.StatusCounts(total=len(ts)))
)


@app.report(reports_pb2.ZoneTotals)
def zone_totals(r: reports_pb2.ZoneTotals, repos: Store) -> Observable[reports_pb2.ZoneTotalsValue]:
    both = reactivex.combine_latest(repos.of(entities_pb2.Zone).watch(), repos.of(Target).watch())
    return derive(
        both,
        lambda pair: reports_pb2.ZoneTotalsValue(
            zones=[reports_pb2.ZoneTotal(zone_id=z.item.id, target_count=len(pair[1])) for z in pair[0]]
        ),
    )


async def use(client: Client) -> None:
    result = await client.execute(commands_pb2.SetTarget(name="a"))
    assert_type(result, command_pb2.CommandResult)
    async for targets in client.watch(queries_pb2.AllTargets(), at_least=result):
        assert_type(targets, list[Target])
    found: Sequence[Target] = await client.get(queries_pb2.TargetById(id="x"), at_least=result.visible_at)
    print(found)
    assert_type(await client.get(reports_pb2.ZoneTotals()), reports_pb2.ZoneTotalsValue)
    async for counts in client.watch(reports_pb2.TargetCountsByStatus()):
        assert_type(counts, reports_pb2.StatusCounts)
    async with client.live() as live:
        targets_sub = live.watch(queries_pb2.AllTargets(), at_least=result)
        counts_sub = live.watch(reports_pb2.TargetCountsByStatus())
        assert_type(await anext(targets_sub), list[Target])
        async for value in counts_sub:
            assert_type(value, reports_pb2.StatusCounts)
"""


def mypy(path: Path) -> tuple[int, str]:
    # From the repository root, so pyproject.toml's settings (strict, mypy_path) apply.
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--show-error-codes", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("typing")
    (out / "wrong_app.py").write_text(WRONG)
    (out / "right_app.py").write_text(RIGHT)
    return out


def test_wrong_handlers_and_result_uses_fail_mypy(cases: Path) -> None:
    path = cases / "wrong_app.py"
    expected = {
        (n, m.group(1))
        for n, line in enumerate(WRONG.splitlines(), start=1)
        if (m := re.search(r"# E: ([a-z-]+)$", line))
    }
    code, output = mypy(path)
    reported = {
        (int(m.group(1)), m.group(2))
        # By file name: mypy's cache may report a file of the same content by an older path.
        for m in re.finditer(r"^\S*wrong_app\.py:(\d+): error: .*\[([a-z-]+)\]$", output, re.M)
    }
    assert code == 1, output
    assert reported == expected, output
    # The message says which message type the handler should take.
    assert 'expected "Callable[[SetTarget, CommandContext]' in output


def test_right_handlers_and_lambdas_pass_mypy(cases: Path) -> None:
    code, output = mypy(cases / "right_app.py")
    assert code == 0, output
