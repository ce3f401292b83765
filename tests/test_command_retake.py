"""A command leader whose transactional id is taken from under it takes it back.

A zombie predecessor that restarts its producer, or the broker ending a
transaction that outlived its timeout, fences the replica holding the lease.
That replica is still the one writer the lease names: without taking its
writer back it would answer UNAVAILABLE ("no command leader is serving yet")
for as long as it lives, with no other replica allowed to write.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from aiokafka import AIOKafkaProducer
from myko_client import Clients, new_tx
from targets.v1 import commands_pb2

from myko.app import App
from myko.command_service import CommandService
from myko.settings import CommandSettings

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(120)]


async def _execute_until_ok(clients: Clients, command: commands_pb2.SetTarget, tx: str) -> int:
    """Retries with the same tx while the answer is UNAVAILABLE; the attempts it took."""
    attempts = 0
    async with asyncio.timeout(30):
        while True:
            attempts += 1
            try:
                await clients.execute(command, tx=tx)
                return attempts
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
                await asyncio.sleep(0.2)


async def test_a_fenced_leader_takes_its_writer_back(myko_env: dict[str, str], example_app: App) -> None:
    settings = CommandSettings.from_env(myko_env)
    command = CommandService(settings, example_app)
    await command.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{command.grpc.port}")
    clients = Clients(command=channel, query=channel)
    rival = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        transactional_id=f"myko-command-{settings.kafka.topic_prefix}leader",
    )
    try:
        await clients.execute(commands_pb2.SetTarget(name="before"))
        # Another producer with the leader's transactional id: the leader's next
        # commit is fenced.
        await rival.start()
        tx = new_tx()
        attempts = await _execute_until_ok(clients, commands_pb2.SetTarget(name="after"), tx)
        assert attempts > 1, "the first commit after the take-over should have been fenced"
        assert command.lease.leading and command.bus.running
        done = await clients.execute(commands_pb2.SetTarget(name="again"))
        assert done.events
    finally:
        await rival.stop()
        await channel.close(None)
        await command.stop()
