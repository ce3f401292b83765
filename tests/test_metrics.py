"""Prometheus metrics of the services (real broker) and of the gateway, as an operator reads them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import grpc
import pytest
from conftest import InProcessStack
from gateway_fakes import start_fake_backend
from grpc_web_client import call, frame
from myko_client import Clients, new_tx, next_matching
from prometheus_client.parser import text_string_to_metric_families
from targets.v1 import commands_pb2, queries_pb2

from myko.app import App
from myko.gateway.server import Gateway
from myko.metrics import Metrics, MetricsServer
from myko.settings import GatewaySettings
from myko.testing import AppStack
from myko.v1 import command_pb2, live_pb2, query_pb2

pytestmark = pytest.mark.kafka

EXECUTE = "myko.v1.CommandBus/Execute"
WATCH = "myko.v1.QueryBus/Watch"


async def eventually(check: Callable[[], bool], *, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.value(name, labels) or 0.0


def parsed(metrics: Metrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The exposition as Prometheus parses it: family name -> (labels, value) samples."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


async def test_commands_are_counted_by_method_code_and_commit(stack: InProcessStack) -> None:
    m = stack.command.metrics
    ids = [f"m{i}" for i in range(5)]
    results = await asyncio.gather(
        *(stack.clients.execute(commands_pb2.SetTarget(id=i, name=i)) for i in ids)
    )
    # A retry with a tx that took effect is answered from the tx log, not run again.
    tx = new_tx()
    await stack.clients.execute(commands_pb2.SetTarget(id="again", name="a"), tx=tx)
    await stack.clients.execute(commands_pb2.SetTarget(id="again", name="a"), tx=tx)
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stack.clients.execute_raw(command_pb2.CommandRequest(tx="nope"))
    assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT

    # The client can see its status before the server's call has finished recording it.
    await eventually(lambda: value(m, "myko_grpc_server_handling_seconds_count", method=EXECUTE) == 8)
    assert value(m, "myko_grpc_server_handled_total", method=EXECUTE, code="OK") == 7
    assert value(m, "myko_grpc_server_handled_total", method=EXECUTE, code="INVALID_ARGUMENT") == 1
    assert value(m, "myko_command_committed_total", command="targets.v1.SetTarget") == 6
    assert value(m, "myko_command_dedupe_hits_total", found="txlog") == 1
    # Group commit: six commands in at most six transactions, each observed once.
    batches = value(m, "myko_command_batch_size_count")
    assert 1 <= batches <= 6
    assert value(m, "myko_command_batch_size_sum") == 6
    assert value(m, "myko_command_commit_seconds_count") == batches
    assert value(m, "myko_command_leader") == 1
    assert value(m, "myko_command_txlog_entries") == 6
    assert value(m, "myko_service_serving") == 1

    # The store's reader catches up with what was committed: no lag left, every partition caught up.
    series = parsed(m)
    lag = series["myko_kafka_consumer_lag_records"]
    assert {labels["consumer"] for labels, _ in lag} == {"store"}
    topic = results[0].events[0].offset.topic
    assert {labels["partition"] for labels, _ in lag if labels["topic"] == topic} == {"0", "1", "2"}
    await eventually(lambda: all(v == 0 for _, v in parsed(m)["myko_kafka_consumer_lag_records"]))
    assert all(v == 1 for _, v in parsed(m)["myko_kafka_consumer_caught_up"])
    # Labels are bounded: no entity id or tx appears in any label value.
    labels = {v for samples in series.values() for ls, _ in samples for v in ls.values()}
    assert labels.isdisjoint({*ids, "again", tx, *(r.tx for r in results)})


async def test_live_evaluations_subscriptions_and_bytes(stack: InProcessStack) -> None:
    m = stack.query.metrics
    kind = {"type": "targets.v1.AllTargets"}
    first = stack.clients.watch(queries_pb2.AllTargets())
    second = stack.clients.watch(queries_pb2.AllTargets())
    try:
        await first.read()
        await second.read()
        # Identical subscriptions share one evaluation.
        assert value(m, "myko_live_evaluations", **kind) == 1
        assert value(m, "myko_live_subscriptions", **kind) == 2
        assert value(m, "myko_grpc_server_streams_open", method=WATCH) == 2
        emitted = value(m, "myko_live_emissions_total", **kind)
        sent = value(m, "myko_live_sent_bytes_total", **kind)

        await stack.clients.execute(commands_pb2.SetTarget(id="live-1", name="x"))
        for stream in (first, second):
            async with asyncio.timeout(20):
                await next_matching(stream, lambda r: len(r.items) == 1)
        # One new value, serialised once, sent to both.
        assert value(m, "myko_live_emissions_total", **kind) == emitted + 1
        assert value(m, "myko_live_sent_messages_total", **kind) >= 4
        assert value(m, "myko_live_sent_bytes_total", **kind) > sent
        assert value(m, "myko_grpc_server_stream_messages_sent_total", method=WATCH) >= 4
    finally:
        first.cancel()
        second.cancel()
    await eventually(lambda: value(m, "myko_live_subscriptions", **kind) == 0)
    assert value(m, "myko_live_evaluations", **kind) == 0
    await eventually(lambda: value(m, "myko_grpc_server_streams_open", method=WATCH) == 0)
    assert value(m, "myko_grpc_server_handled_total", method=WATCH, code="CANCELLED") == 2
    assert value(m, "myko_repo_feed_ready") == 1


async def test_metrics_server_serves_the_text_format(stack: InProcessStack) -> None:
    server = MetricsServer(stack.repo.metrics, "127.0.0.1", 0)
    await server.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{server.port}/metrics") as resp,
        ):
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await resp.text()
    finally:
        await server.stop()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["myko_service_serving"].samples[0].value == 1
    assert families["myko_kafka_consumer_lag_records"].type == "gauge"
    assert families["myko_quarantined_records"].type == "counter"


def test_process_registry_has_cpu_rss_and_identity() -> None:
    m = Metrics.for_process("repo", "repo-1")
    assert (m.value("process_resident_memory_bytes") or 0) > 0
    assert m.value("process_cpu_seconds_total") is not None
    samples = parsed(m)["myko_service_info"]
    assert samples[0][0]["service"] == "repo" and samples[0][0]["instance_id"] == "repo-1"
    # Its own registry, not prometheus_client's global one: two processes' worth do not clash.
    Metrics.for_process("repo", "repo-2")


async def test_sagas_count_processed_events_and_their_group_lag(
    kafka_bootstrap: str, example_app: App
) -> None:
    async with AppStack(example_app, bootstrap_servers=kafka_bootstrap) as stack:
        assert stack.saga is not None
        m = stack.saga.metrics
        channel = grpc.aio.insecure_channel(stack.command_addr)
        clients = Clients(command=channel, query=channel)
        try:
            await clients.execute(commands_pb2.SetZone(id="z1", name="zone"))
            await clients.execute(commands_pb2.SetTarget(id="t1", name="t", zone_id="z1"))
            await clients.execute(commands_pb2.DeleteZone(id="z1"))
        finally:
            await clients.close()
        sagas = [r.name for r in stack.saga.runners]

        def processed() -> float:
            return sum(value(m, "myko_saga_events_processed_total", saga=s) for s in sagas)

        await eventually(lambda: processed() >= 3, timeout_s=60)
        assert sum(value(m, "myko_saga_commands_total", saga=s) for s in sagas) >= 1
        assert sum(value(m, "myko_saga_dead_letters_total", saga=s) for s in sagas) == 0
        lag = parsed(m)["myko_kafka_consumer_lag_records"]
        consumers = {labels["consumer"] for labels, _ in lag}
        assert {f"saga:{s}" for s in sagas} <= consumers and "store" in consumers
        await eventually(
            lambda: all(v == 0 for _, v in parsed(m)["myko_kafka_consumer_lag_records"]), timeout_s=30
        )


async def test_gateway_counts_calls_sessions_and_frames() -> None:
    backend = await start_fake_backend()
    settings = GatewaySettings(
        port=0, command_addr=backend.addr, query_addr=backend.addr, report_addr=backend.addr
    )
    gateway = Gateway(settings)
    await gateway.start()
    base = f"http://127.0.0.1:{gateway.port}"
    m = gateway.metrics
    try:
        async with aiohttp.ClientSession() as http:
            packed = command_pb2.CommandRequest(tx="tx-1")
            packed.command.Pack(commands_pb2.DeleteTarget(id="t1"))
            ok = await call(http, f"{base}/{EXECUTE}", packed.SerializeToString())
            assert ok.code == 0
            missing = await call(http, f"{base}/x.y/Z", b"")
            assert missing.code == grpc.StatusCode.UNIMPLEMENTED.value[0]
            assert value(m, "myko_gateway_requests_total", method=f"/{EXECUTE}", code="OK") == 1
            assert value(m, "myko_gateway_requests_total", method="other", code="UNIMPLEMENTED") == 1
            assert value(m, "myko_gateway_request_seconds_count", method=f"/{EXECUTE}") == 1

            q = query_pb2.QueryRequest()
            q.query.Pack(queries_pb2.AllTargets())
            request = live_pb2.LiveOpen(
                subscriptions=[live_pb2.LiveSubscription(sub_id=s, query=q) for s in ("a", "b")]
            )
            async with http.post(
                f"{base}/myko.v1.LiveBus/Open",
                data=frame(request.SerializeToString()),
                headers={"Content-Type": "application/grpc-web+proto"},
            ) as resp:
                await eventually(lambda: value(m, "myko_gateway_live_frames_sent_total") >= 3)
                assert value(m, "myko_gateway_sessions") == 1
                # Two identical subscriptions, one upstream feed.
                assert value(m, "myko_gateway_feeds") == 1
                assert value(m, "myko_gateway_subscriptions") == 2
                assert value(m, "myko_gateway_feed_results_total") >= 1
                assert value(m, "myko_gateway_live_sent_bytes_total") > 0
                resp.close()
            await eventually(lambda: value(m, "myko_gateway_sessions") == 0)
            async with http.get(f"{base}/metrics") as page:
                assert page.status == 200
                text = await page.text()
            assert "myko_gateway_feeds 0.0" in text
    finally:
        await gateway.stop()
        await backend.server.stop(grace=None)
