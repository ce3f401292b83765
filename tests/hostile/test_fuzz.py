"""Property-based run: ≥ 10,000 generated hostile requests against the real stack.

Hypothesis draws batches of request recipes (fuzz.py); each batch is built and
sent at once.
Every answer must keep the invariants (driver.violations: no INTERNAL/UNKNOWN,
no HTTP 5xx, no hang, a bounded message echoing at most a bounded run of the
request), and after every batch every service is still running. At the end the
bystander (bystander.py) must have seen each of its commands within
MAX_BYSTANDER_DELAY_S on every watch, with only values it sent, and no service
may have grown its RSS by more than MAX_RSS_GROWTH_BYTES.

Reproducing: CI runs derandomised (the same requests every run; a failure prints
the falsifying batch and a @reproduce_failure blob). Locally,
MYKO_HOSTILE_SEED=random picks a seed and prints it, MYKO_HOSTILE_SEED=<n>
replays that seed, MYKO_HOSTILE_BATCHES=<n> changes the number of batches and
MYKO_HOSTILE_SHRINK=1 lets Hypothesis shrink a failing batch (slow).
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from .cases import Via, code_name
from .conftest import MAX_BYSTANDER_DELAY_S, MAX_RSS_BYTES, MAX_RSS_GROWTH_BYTES, Hostile
from .driver import violations
from .fuzz import Fuzzed, Recipe, build, recipes
from .wire import Outcome

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]

BATCH = 50
BATCHES = int(os.environ.get("MYKO_HOSTILE_BATCHES", "200"))
MIN_REQUESTS = 10_000
# Gateway HTTP statuses a hostile request may get: its own 415, aiohttp's refusals
# of malformed HTTP (400, 413 and 431 for over-long lines), 404/405 for GETs.
HTTP_REFUSALS = {200, 400, 404, 405, 413, 415, 431}
SEED_ENV = "MYKO_HOSTILE_SEED"
SHRINK_ENV = "MYKO_HOSTILE_SHRINK"


def _seeded(fn: Callable[..., Any]) -> tuple[Callable[..., Any], str]:
    raw = os.environ.get(SEED_ENV, "").strip()
    base = settings(
        max_examples=BATCHES,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
        # No shrinking unless asked: against a live stack it can take many minutes,
        # and a failing batch already names each failing request.
        phases=(Phase.explicit, Phase.generate, *((Phase.shrink,) if os.environ.get(SHRINK_ENV) else ())),
    )
    if not raw:
        return settings(base, derandomize=True)(fn), "derandomized (fixed per test: CI)"
    value = random.randrange(2**32) if raw == "random" else int(raw)
    return seed(value)(settings(base, derandomize=False)(fn)), f"seed {value} (replay: {SEED_ENV}={value})"


def _first_traceback(log: str) -> str:
    """The first traceback in a log with the line before it (what logged it), for the failure
    message: CI keeps only the test's output, not the services' logs."""
    at = log.find("Traceback")
    if at < 0:
        return ""
    start = log.rfind("\n", 0, log.rfind("\n", 0, at)) + 1
    return f"{log.count('Traceback')} traceback(s), the first:\n{log[start : at + 3000]}"


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.codes: collections.Counter[str] = collections.Counter()

    def add(self, fuzzed: Fuzzed, outcome: Outcome) -> None:
        self.sent += 1
        if outcome.code is None:
            self.codes[f"HTTP {outcome.http} ({fuzzed.via.value})"] += 1
        else:
            self.codes[code_name(outcome.code)] += 1


def test_fuzz(hostile: Hostile, capsys: pytest.CaptureFixture[str]) -> None:
    stack, driver = hostile.stack, hostile.driver
    tally = Tally()

    async def send_all(batch: list[Fuzzed]) -> list[Outcome]:
        return await asyncio.gather(
            *(driver.send_request(f.endpoint, f.via, f.request, wait_s=20.0) for f in batch)
        )

    def check(recipes: list[Recipe]) -> None:
        batch = [build(recipe, hostile.world) for recipe in recipes]
        outcomes = driver.run(send_all(batch))
        problems = []
        for f, outcome in zip(batch, outcomes, strict=True):
            tally.add(f, outcome)
            found = violations(outcome, f.request)
            if outcome.http not in HTTP_REFUSALS:
                found.append(f"HTTP {outcome.http}")
            if f.via in (Via.WEB, Via.WEB_TEXT) and outcome.http == 200 and outcome.code is None:
                found.append("HTTP 200 without a grpc-status")
            if found:
                problems.append(f"{'; '.join(found)}\n    request: {f!r}\n    got: {outcome.describe()}")
        dead = stack.dead()
        if dead:
            problems.append(f"services died: {dead}")
        if tally.sent % (BATCH * 20) == 0:
            with capsys.disabled():
                rate = tally.sent / (time.monotonic() - began)
                print(f"hostile fuzz: {tally.sent} requests ({rate:.0f}/s)", flush=True)
        assert not problems, "\n".join(problems)

    run, how = _seeded(given(st.lists(recipes(), min_size=BATCH, max_size=BATCH))(check))
    began = time.monotonic()
    with capsys.disabled():
        print(f"\nhostile fuzz: {BATCHES} batches of {BATCH}, {how}", flush=True)
    run()
    elapsed = time.monotonic() - began

    settled = hostile.bystander.settle(timeout_s=MAX_BYSTANDER_DELAY_S * 2)
    record = hostile.bystander.record
    record.dump(stack.log_dir / "bystander.json")
    delays = record.delays()
    growth = stack.memory.growth()
    unhealthy = stack.unhealthy()
    with capsys.disabled():
        print(
            f"hostile fuzz: {tally.sent} requests in {elapsed:.0f}s ({tally.sent / elapsed:.0f}/s); "
            f"statuses {dict(tally.codes.most_common())}\n"
            f"hostile: RSS growth {_mib(growth)} (peak {_mib(stack.memory.peak)}); "
            f"bystander: {len(record.acked)} commands, worst delay per watch "
            f"{ {k: round(v, 2) for k, v in delays.items()} }",
            flush=True,
        )
    assert tally.sent >= MIN_REQUESTS or BATCHES * BATCH < MIN_REQUESTS
    assert not stack.dead(), f"services died: {stack.dead()}"
    assert not unhealthy, f"services not answering their health check: {unhealthy}"
    # A client's mistakes are answered, not logged as failures: no service logged a traceback.
    tracebacks = {
        s.name: found
        for s in stack.services
        if (found := _first_traceback(s.log_path.read_text(errors="replace")))
    }
    assert not tracebacks, f"tracebacks in the services' logs (under {stack.log_dir}): {tracebacks}"
    assert not record.errors, f"the bystander was disturbed: {record.errors[:5]}"
    assert not record.wrong_values(), record.wrong_values()[:5]
    assert settled, f"a bystander watch never showed the last score: {record.describe()}"
    assert max(delays.values()) <= MAX_BYSTANDER_DELAY_S, f"bystander delays {delays}: {record.describe()}"
    over = {k: v for k, v in growth.items() if v > MAX_RSS_GROWTH_BYTES}
    assert not over, f"RSS grew by more than {MAX_RSS_GROWTH_BYTES // 2**20} MiB: {_mib(over)}"
    big = {k: v for k, v in stack.memory.peak.items() if v > MAX_RSS_BYTES}
    assert not big, f"RSS over {MAX_RSS_BYTES // 2**20} MiB: {_mib(big)}"


def _mib(values: dict[str, int]) -> dict[str, str]:
    return {k: f"{v / 2**20:.0f}MiB" for k, v in values.items()}
