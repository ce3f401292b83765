"""A query replica whose repo_svc comes back never shows less than it showed before.

A repo_svc listens before it has read the topics; its snapshot then is partial
(empty at first). Found while reviewing the cluster fault test: query_svc's
feed reconnected to such a repo and reset its mirror to the partial snapshot,
so open Watch streams lost every entity until the repo caught up again.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from myko_client import Clients, Stream, items, new_tx
from targets.v1 import commands_pb2, entities_pb2, queries_pb2

from myko.app import App
from myko.command_service import CommandService
from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.local.ports import free_port
from myko.repo_service import RepoService
from myko.settings import CommandSettings, QuerySettings, RepoSettings
from myko.v1 import item_pb2, query_pb2

pytestmark = pytest.mark.kafka

TARGETS = 300


async def _collect(stream: Stream[query_pb2.QueryResult], sizes: list[int]) -> None:
    while True:
        sizes.append(len((await stream.read()).items))


async def test_a_repo_that_is_back_but_not_caught_up_is_not_mirrored(
    myko_env: dict[str, str], example_app: App
) -> None:
    env = {**myko_env, "MYKO_REPO_PORT": str(free_port())}
    repo = RepoService(RepoSettings.from_env(env), example_app)
    await repo.start()
    live_env = {**env, "MYKO_REPO_ADDR": f"127.0.0.1:{repo.grpc.port}"}
    command = CommandService(CommandSettings.from_env(env), example_app)
    query = LiveService(QuerySettings.from_env(live_env), example_app, kind=LiveKind.QUERY)
    await command.start()
    await query.start()
    clients = Clients(
        command=grpc.aio.insecure_channel(f"127.0.0.1:{command.grpc.port}"),
        query=grpc.aio.insecure_channel(f"127.0.0.1:{query.grpc.port}"),
    )
    again: RepoService | None = None
    collector: asyncio.Task[None] | None = None
    try:
        # The stream opens at or past every import, so its first emission is
        # whole: otherwise it may start from a mirror a batch behind.
        fence = item_pb2.Watermark()
        for i in range(0, TARGETS, 100):
            batch = [commands_pb2.SetTarget(name=f"t{i + j}") for j in range(100)]
            result = await clients.execute(commands_pb2.ImportTargets(targets=batch))
            fence.positions.extend(result.visible_at.positions)
        stream = clients.watch(queries_pb2.AllTargets(), at_least=fence)
        sizes: list[int] = []
        collector = asyncio.create_task(_collect(stream, sizes))
        async with asyncio.timeout(15):
            while not sizes:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert sizes == [TARGETS]

        await repo.stop()
        # The same address again, listening but not caught up yet (as in the
        # first moments of a restart), long enough for the feed to reconnect.
        again = RepoService(RepoSettings.from_env(env), example_app)
        await again.grpc.start()
        await asyncio.sleep(3)
        await again.reader.start()
        await again.reader.wait_caught_up(timeout_s=30)
        again.caught_up.set()
        await again.grpc.set_serving()

        # The feed resumes: a new write shows up in the open stream.
        done = await clients.execute(commands_pb2.SetTarget(name="after"), tx=new_tx())
        async with asyncio.timeout(20):
            while not sizes or sizes[-1] != TARGETS + 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        got = await clients.get(queries_pb2.AllTargets(), at_least=done.visible_at)
        assert len(items(got, entities_pb2.Target)) == TARGETS + 1
        assert min(sizes) == TARGETS, f"the open stream went back: {sizes}"
    finally:
        if collector is not None:
            collector.cancel()
        await clients.close()
        await query.stop()
        await command.stop()
        if again is not None:
            await again.stop()
        await repo.stop()
