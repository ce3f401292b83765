"""A follower's client of the leader survives the leader changing twice in a row.

A forward that replaced the leader's client waits while the old one closes; if
the lease moves again meanwhile, a second forward replaces (and closes) the
client the first just made. The first forward must not then call through a
closed client: that raised ConfigError ("Client not started"), which reaches
the caller as INTERNAL. It answers UNAVAILABLE (retry with the same tx) instead.
"""

from __future__ import annotations

import asyncio

import pytest

from myko.app import App
from myko.client import Client
from myko.command_service import CommandService
from myko.errors import Unavailable
from myko.settings import CommandSettings


async def test_a_forward_never_gets_a_client_closed_by_a_later_leader_change(
    example_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "MYKO_APP": "targets", "MYKO_AUTH_DISABLED": "true"}
    svc = CommandService(CommandSettings.from_env(env), example_app)
    closing = asyncio.Event()
    stop = Client.stop

    async def slow_stop(self: Client) -> None:
        await closing.wait()  # the old channel takes a while to close
        await stop(self)

    monkeypatch.setattr(Client, "stop", slow_stop)
    svc.leader_addr = "10.0.0.1:50051"
    first_client = await svc._leader_client()
    try:
        svc.leader_addr = "10.0.0.2:50051"
        first = asyncio.create_task(svc._leader_client())
        await asyncio.sleep(0)  # it has swapped in 10.0.0.2 and waits for 10.0.0.1 to close
        svc.leader_addr = "10.0.0.3:50051"
        second = asyncio.create_task(svc._leader_client())
        await asyncio.sleep(0)
        closing.set()
        got = await asyncio.gather(first, second, return_exceptions=True)
        for client in got:
            if isinstance(client, Client):
                # Whatever a forward gets, it can call through it.
                client._ready("command")
            else:
                assert isinstance(client, Unavailable), repr(client)
        assert isinstance(got[1], Client) and got[1].command_addr == "10.0.0.3:50051"
    finally:
        closing.set()
        await first_client.stop()
        if svc._leader is not None:
            await svc._leader.stop()
