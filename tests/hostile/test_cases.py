"""The hostile-input case table (cases.py) against the real services and the gateway.

Each case checks its documented status, the invariants every answer keeps
(driver.violations: no INTERNAL/UNKNOWN, no HTTP 5xx, a bounded message that
echoes at most a bounded run of the request) and that no service died.
"""

from __future__ import annotations

import pytest

from .cases import Case, all_cases
from .conftest import Hostile
from .driver import violations
from .wire import _code_name

pytestmark = pytest.mark.kafka

CASES = all_cases()


def test_the_table_has_at_least_100_cases() -> None:
    assert len(CASES) >= 100
    assert len({(c.endpoint.name, c.name) for c in CASES}) >= 100


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(hostile: Hostile, case: Case) -> None:
    request, outcome = hostile.driver.run(hostile.driver.send(case))
    problems = violations(outcome, request)
    want = case.expect
    if outcome.http != want.http:
        problems.append(f"HTTP {outcome.http}, expected {want.http}")
    if not want.accepts(outcome.code):
        expected = "no gRPC status" if want.code is None else _code_name(want.code)
        problems.append(f"expected {expected}")
    for sub_id, code in want.subs:
        if outcome.subs.get(sub_id) != code:
            problems.append(f"sub {sub_id!r}: expected {_code_name(code)}")
    dead = hostile.stack.dead()
    if dead:
        problems.append(f"services died: {dead}")
    assert not problems, f"{case.id}: {'; '.join(problems)}\n  got {outcome.describe()}"
