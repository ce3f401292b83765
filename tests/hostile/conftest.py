"""One stack for the whole hostile suite: real processes, seeded, with a bystander watching.

The case table (test_cases.py) and the fuzzer (test_fuzz.py) run against the
same processes, so memory growth and the bystander's delays cover both.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from myko_client import Clients

from .bystander import Bystander
from .cases import World, seed_commands
from .driver import Driver
from .stack import HostileStack

# Bounds this suite holds the stack to (docs/testing.md, "Hostile input").
# RSS growth of each service from its warmed-up baseline to its peak.
MAX_RSS_GROWTH_BYTES = 100 * 1024 * 1024
# And each service's peak RSS: half the 512M limit of a service in swarm/stack.yml.
MAX_RSS_BYTES = 256 * 1024 * 1024
# Sending a bystander's command to each of its watches showing the new value.
MAX_BYSTANDER_DELAY_S = 5.0


@dataclass
class Hostile:
    stack: HostileStack
    world: World
    driver: Driver
    bystander: Bystander


async def _seed(driver: Driver) -> None:
    clients = Clients(command=driver.channels["command"], query=driver.channels["query"])
    for tx, cmd in seed_commands():
        await clients.execute(cmd, tx=tx or None)


@pytest.fixture(scope="package")
def hostile(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    prefix = f"h{uuid.uuid4().hex[:8]}."
    log_dir: Path = tmp_path_factory.mktemp("hostile-logs")
    stack = HostileStack(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, log_dir=log_dir)
    # Undone in reverse, each step even when an earlier one fails: no process outlives the suite.
    with contextlib.ExitStack() as undo:
        undo.callback(stack.stop)
        stack.start()
        world = World(topic_prefix=prefix)
        # The one event loop of this process that uses grpc.aio (it supports one).
        driver = Driver(stack, world)
        undo.callback(driver.close)
        driver.run(_seed(driver))
        bystander = Bystander(stack, log_path=log_dir / "bystander.log")
        undo.callback(bystander.stop)
        bystander.start()
        stack.set_baseline()
        yield Hostile(stack, world, driver, bystander)
