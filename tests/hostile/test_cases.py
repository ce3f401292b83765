"""The hostile-input case table (cases.py) against the real services and the gateway.

Each case checks its documented status, the invariants every answer keeps
(driver.violations: no INTERNAL/UNKNOWN, no HTTP 5xx, a bounded message that
echoes at most a bounded run of the request) and that no service died.
"""

from __future__ import annotations

import asyncio

import pytest

from .cases import Case, Request, all_cases, code_name, doc_tables
from .conftest import Hostile
from .driver import violations
from .stack import ROOT
from .wire import Outcome

pytestmark = pytest.mark.kafka

CASES = all_cases()
# Cases in flight at once: well under the gateway's streams per client (128),
# which every case shares, being sent from one address.
CONCURRENCY = 8
Sent = tuple[Request, Outcome, list[str]]


@pytest.fixture(scope="module")
def outcomes(hostile: Hostile, request: pytest.FixtureRequest) -> dict[str, Sent]:
    """Every selected case sent once, CONCURRENCY at a time; the tests then check one each."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if hasattr(item, "callspec") and "case" in item.callspec.params
    }
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(case: Case) -> tuple[str, Sent]:
        async with gate:
            sent, outcome = await hostile.driver.send(case)
            # Who died right after this case (all cases run at once, so attribute here).
            return case.id, (sent, outcome, hostile.stack.dead())

    async def every() -> dict[str, Sent]:
        return dict(await asyncio.gather(*(one(c) for c in CASES if c.id in selected)))

    return hostile.driver.run(every())


def test_the_table_has_at_least_100_cases() -> None:
    assert len(CASES) >= 100
    assert len({(c.endpoint.name, c.name) for c in CASES}) >= 100


def test_docs_list_every_case() -> None:
    """docs/errors.md shows this very table (regenerate: PYTHONPATH=.:tests:examples/targets python -m hostile.cases)."""
    assert doc_tables() in (ROOT / "docs" / "errors.md").read_text()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(outcomes: dict[str, Sent], case: Case) -> None:
    request, outcome, dead = outcomes[case.id]
    problems = violations(outcome, request)
    want = case.expect
    if outcome.http != want.http:
        problems.append(f"HTTP {outcome.http}, expected {want.http}")
    if not want.accepts(outcome.code):
        expected = "no gRPC status" if want.code is None else code_name(want.code)
        problems.append(f"expected {expected}")
    for sub_id, code in want.subs:
        if outcome.subs.get(sub_id) != code:
            problems.append(f"sub {sub_id!r}: expected {code_name(code)}")
    if dead:
        problems.append(f"services died: {dead}")
    assert not problems, f"{case.id}: {'; '.join(problems)}\n  got {outcome.describe()}"
