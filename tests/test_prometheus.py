"""A real Prometheus (Debian's package) scraping a running stack on a real broker.

The configuration is the one `myko run --prometheus` generates; the test reads
what Prometheus stored through its HTTP API, as a dashboard would.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import grpc
import pytest
import yaml
from myko_client import Clients
from targets.v1 import commands_pb2, queries_pb2

from myko import catalogue
from myko.app import App
from myko.command_service import CommandService
from myko.gateway.server import Gateway
from myko.lifecycle import Lifecycle
from myko.live_kind import LiveKind
from myko.live_service import LiveService
from myko.local.ports import free_port
from myko.local.prometheus import ALERT_RULES, LocalPrometheus, ScrapeTarget, prometheus_config, targets_of
from myko.local.topology import cluster_stack, local_stack
from myko.metrics import Metrics, MetricsServer
from myko.pki import ensure_service_certs
from myko.repo_service import RepoService
from myko.settings import (
    CommandSettings,
    GatewaySettings,
    QuerySettings,
    ReportSettings,
    RepoSettings,
    TlsSettings,
)


class _Stoppable(Protocol):
    async def stop(self) -> None: ...


ROOT = Path(__file__).resolve().parent.parent


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        # CI installs Debian's prometheus (.ci/run): there a missing binary is a failure.
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is not installed (Debian's prometheus package)")
        pytest.skip(f"{tool} is not installed (apt-get install prometheus)")
    return path


def _check_config(tmp_path: Path, config: str) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(config)
    checked = subprocess.run(
        [_need("promtool"), "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_local_stacks_scrape_every_service_by_catalogue_name(tmp_path: Path) -> None:
    one = targets_of(local_stack(app="targets", bootstrap_servers="k:9092", log_dir=tmp_path))
    assert [(t.job, t.address) for t in one] == [
        (spec.name, f"127.0.0.1:{spec.metrics_port}") for spec in catalogue.SERVICES
    ]
    # The gateway serves /metrics on its own port; shifted and replicated stacks move with their ports.
    assert ("gateway", "127.0.0.1:8080") in [(t.job, t.address) for t in one]
    two = targets_of(
        cluster_stack(app="targets", bootstrap_servers="k:9092", log_dir=tmp_path, port_shift=1000)
    )
    assert ("command", "127.0.0.1:10551") in [(t.job, t.address) for t in two]
    config = json.loads(prometheus_config(two))
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    assert list(jobs) == [spec.name for spec in catalogue.SERVICES]
    assert jobs["query"] == ["127.0.0.1:10452", "127.0.0.1:10552"]
    assert config["rule_files"] == [str(ALERT_RULES)]
    _check_config(tmp_path, prometheus_config(two))


@dataclass
class Scraped:
    prometheus: LocalPrometheus
    services: dict[str, Lifecycle]
    servers: dict[str, MetricsServer]
    clients: Clients


async def _query(http: aiohttp.ClientSession, base: str, promql: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?query={urllib.parse.quote(promql)}"
    async with http.get(url) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _value(http: aiohttp.ClientSession, base: str, promql: str) -> float | None:
    result = await _query(http, base, promql)
    return float(result[0]["value"][1]) if result else None


async def _until(
    http: aiohttp.ClientSession, base: str, promql: str, want: float, *, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    last: float | None = None
    while time.monotonic() < deadline:
        last = await _value(http, base, promql)
        if last is not None and last >= want:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{promql} = {last}, expected >= {want} within {timeout_s}s")


@pytest.fixture
async def scraped(myko_env: dict[str, str], example_app: App, tmp_path: Path) -> AsyncIterator[Scraped]:
    _need("prometheus")
    started: list[_Stoppable] = []
    metrics = {
        name: Metrics.for_process(name, f"test-{name}") for name in ("repo", "command", "query", "report")
    }
    try:
        repo = RepoService(RepoSettings.from_env(myko_env), example_app, metrics=metrics["repo"])
        await repo.start()
        started.append(repo)
        live_env = {**myko_env, "MYKO_REPO_ADDR": f"127.0.0.1:{repo.grpc.port}"}
        command = CommandService(CommandSettings.from_env(myko_env), example_app, metrics=metrics["command"])
        query = LiveService(
            QuerySettings.from_env(live_env), example_app, kind=LiveKind.QUERY, metrics=metrics["query"]
        )
        report = LiveService(
            ReportSettings.from_env(live_env), example_app, kind=LiveKind.REPORT, metrics=metrics["report"]
        )
        for svc in (command, query, report):
            await svc.start()
            started.append(svc)
        gateway = Gateway(
            GatewaySettings(
                port=0,
                command_addr=f"127.0.0.1:{command.grpc.port}",
                query_addr=f"127.0.0.1:{query.grpc.port}",
                report_addr=f"127.0.0.1:{report.grpc.port}",
            ),
            metrics=Metrics.for_process("gateway", "test-gateway"),
        )
        await gateway.start()
        started.append(gateway)
        servers = {name: MetricsServer(m, "127.0.0.1", 0) for name, m in metrics.items()}
        for server in servers.values():
            await server.start()
            started.append(server)
        targets = [ScrapeTarget(name, f"127.0.0.1:{s.port}") for name, s in servers.items()]
        targets.append(ScrapeTarget("gateway", f"127.0.0.1:{gateway.port}"))
        config = prometheus_config(targets, scrape_interval_s=1.0)
        _check_config(tmp_path, config)
        prometheus = LocalPrometheus(data_dir=tmp_path / "prometheus", port=free_port(), config=config)
        # Its start blocks until /-/ready: off the loop, which the services run on.
        await asyncio.to_thread(prometheus.start)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{command.grpc.port}")
        clients = Clients(command=channel, query=grpc.aio.insecure_channel(f"127.0.0.1:{query.grpc.port}"))
        try:
            yield Scraped(
                prometheus,
                {"repo": repo, "command": command, "query": query, "report": report},
                servers,
                clients,
            )
        finally:
            await clients.close()
            await asyncio.to_thread(prometheus.stop)
    finally:
        for done in reversed(started):
            await done.stop()


async def test_prometheus_scrapes_the_stack_and_sees_commands_move_the_series(scraped: Scraped) -> None:
    base = scraped.prometheus.url
    async with aiohttp.ClientSession() as http:
        # Every service and the gateway, up.
        await _until(http, base, "count(up == 1)", 5)
        jobs = {r["metric"]["job"] for r in await _query(http, base, "up")}
        assert jobs == {"repo", "command", "query", "report", "gateway"}
        # The rules the stack alerts on are loaded and evaluate cleanly.
        async with http.get(f"{base}/api/v1/rules") as resp:
            groups = (await resp.json())["data"]["groups"]
        rules = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        assert set(rules) == {
            "MykoTargetDown",
            "MykoNotServing",
            "MykoConsumerLag",
            "MykoDeadLetters",
            "MykoQuarantinedRecords",
            "MykoRpcErrors",
            "MykoGatewayErrors",
        }
        await asyncio.sleep(2.5)  # a couple of evaluations
        async with http.get(f"{base}/api/v1/rules") as resp:
            groups = (await resp.json())["data"]["groups"]
        assert {r["health"] for g in groups for r in g["rules"]} == {"ok"}

        executed = 'sum(myko_grpc_server_handled_total{job="command", method="myko.v1.CommandBus/Execute", code="OK"})'
        before = await _value(http, base, executed) or 0.0
        watch = scraped.clients.watch(queries_pb2.AllTargets())
        try:
            await watch.read()
            for i in range(5):
                await scraped.clients.execute(commands_pb2.SetTarget(id=f"p{i}", name=f"p{i}"))
            await _until(http, base, executed, before + 5)
            await _until(
                http,
                base,
                'sum(myko_command_committed_total{job="command", command="targets.v1.SetTarget"})',
                5,
            )
            await _until(
                http, base, 'sum(myko_live_emissions_total{job="query", type="targets.v1.AllTargets"})', 2
            )
            await _until(http, base, 'sum(myko_live_subscriptions{job="query"})', 1)
            await _until(http, base, 'sum(myko_kafka_consumer_records_total{job="repo"})', 5)
        finally:
            watch.cancel()
        # Read back everything: no lag, every partition caught up.
        await _until(http, base, 'count(myko_kafka_consumer_caught_up{job="repo"} == 1)', 1)
        assert await _value(http, base, 'max(myko_kafka_consumer_lag_records{job="repo"})') == 0
        for job in ("repo", "command", "query", "report", "gateway"):
            assert (await _value(http, base, f'process_resident_memory_bytes{{job="{job}"}}') or 0) > 0
            assert await _value(http, base, f'myko_service_serving{{job="{job}"}}') == 1
        assert await _value(http, base, 'myko_command_leader{job="command"}') == 1

        # A target that stops answering is seen down: what MykoTargetDown fires on.
        await scraped.servers["report"].stop()
        deadline = time.monotonic() + 30
        while await _value(http, base, 'up{job="report"}') != 0:
            assert time.monotonic() < deadline, "report still up after its metrics server stopped"
            await asyncio.sleep(0.5)


# -- what operators read: the Swarm scrape config, the dashboard, the alerts, the docs ---------

SWARM_CONFIG = ROOT / "swarm" / "prometheus" / "prometheus.yml"
# What docker-stack.security.yml mounts instead: the gateway serves /metrics over HTTPS there.
SWARM_TLS_CONFIG = ROOT / "swarm" / "prometheus" / "prometheus.security.yml"
DASHBOARD = ROOT / "swarm" / "grafana" / "dashboards" / "myko.json"
DOCS = ROOT / "docs" / "observability.md"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed_names() -> dict[str, str]:
    """Every series name a Myko process can expose (family name -> its type), all areas made."""
    m = Metrics.for_process("any", "any-1")
    for area in ("rpc", "command", "consumers", "live", "sagas", "quarantine", "gateway"):
        getattr(m, area)
    out: dict[str, str] = {}
    for family in m.registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            out[family.name + suffix] = family.type
    return out


def _exprs_of_dashboard() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_the_swarm_prometheus_scrapes_every_catalogued_service_on_its_metrics_port(tmp_path: Path) -> None:
    config = yaml.safe_load(SWARM_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for spec in catalogue.SERVICES:
        [sd] = jobs[spec.name]["dns_sd_configs"]
        assert sd["names"] == [f"tasks.{spec.name}"]
        assert sd["port"] == spec.metrics_port
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    checked = subprocess.run(
        [_need("promtool"), "check", "config", "--syntax-only", str(SWARM_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_secured_swarm_prometheus_scrapes_the_gateway_over_https_and_the_rest_alike() -> None:
    plain = yaml.safe_load(SWARM_CONFIG.read_text())
    secured = yaml.safe_load(SWARM_TLS_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in secured["scrape_configs"]}
    gateway = jobs[catalogue.GATEWAY.name]
    assert gateway["scheme"] == "https"
    # The CA the stack mounts (tests/test_stack_security.py checks the mount); the
    # certificate is checked for the service's name, as every Myko client does.
    assert gateway["tls_config"] == {"ca_file": "/run/secrets/tls_ca", "server_name": catalogue.GATEWAY.name}
    # Apart from that, the same file: a job added to one is added to the other.
    del gateway["scheme"], gateway["tls_config"]
    assert secured == plain
    checked = subprocess.run(
        [_need("promtool"), "check", "config", "--syntax-only", str(SWARM_TLS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_a_real_prometheus_scrapes_an_https_gateway_with_the_secured_stacks_job(tmp_path: Path) -> None:
    """The secured stack's gateway job as Prometheus runs it, against a gateway serving HTTPS.

    The target is an IP, as Swarm's DNS gives; the plain stack's job beside it
    shows why the secured stack needs its own (it is what fired MykoTargetDown).
    """
    _need("prometheus")
    certs = ensure_service_certs(tmp_path / "pki", [catalogue.GATEWAY.name])
    files, ca = certs[catalogue.GATEWAY.name], tmp_path / "pki" / "ca.crt"
    tls = TlsSettings(cert_file=str(files.cert), key_file=str(files.key), ca_file=str(ca), public=True)
    # Buses nobody answers on: /metrics does not need them.
    gateway = Gateway(
        GatewaySettings(
            port=0, command_addr="127.0.0.1:9", query_addr="127.0.0.1:9", report_addr="127.0.0.1:9", tls=tls
        ),
        metrics=Metrics.for_process("gateway", "test-gateway"),
    )
    await gateway.start()
    try:
        target = {"static_configs": [{"targets": [f"127.0.0.1:{gateway.port}"]}]}

        def job(config_file: Path, name: str) -> dict[str, Any]:
            config = yaml.safe_load(config_file.read_text())
            [found] = [j for j in config["scrape_configs"] if j["job_name"] == catalogue.GATEWAY.name]
            del found["dns_sd_configs"]
            if "tls_config" in found:
                found["tls_config"]["ca_file"] = str(ca)
            return {**found, **target, "job_name": name, "scrape_interval": "1s", "scrape_timeout": "1s"}

        config = {"scrape_configs": [job(SWARM_TLS_CONFIG, "secured"), job(SWARM_CONFIG, "plain")]}
        prometheus = LocalPrometheus(
            data_dir=tmp_path / "prometheus", port=free_port(), config=json.dumps(config)
        )
        await asyncio.to_thread(prometheus.start)
        try:
            async with aiohttp.ClientSession() as http:
                base = prometheus.url
                await _until(http, base, 'up{job="secured"}', 1, timeout_s=60)
                # The gateway's own series came through, not just a TCP connection.
                await _until(http, base, 'count(myko_gateway_sessions{job="secured"})', 1, timeout_s=30)
                # The plain stack's job against it: scraped, and down.
                await _until(http, base, 'count(up{job="plain"})', 1, timeout_s=30)
                assert await _value(http, base, 'up{job="plain"}') == 0
        finally:
            await asyncio.to_thread(prometheus.stop)
    finally:
        await gateway.stop()


def test_dashboard_and_alerts_use_only_series_the_services_expose(tmp_path: Path) -> None:
    names = exposed_names()
    exprs = _exprs_of_dashboard()
    alerts = yaml.safe_load(ALERT_RULES.read_text())
    exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    used = {n for e in exprs for n in re.findall(r"\b(myko_[a-z_]+|process_[a-z_]+)\b", e)}
    assert used, "no metric found in the expressions"
    assert used <= set(names), f"not exposed by any service: {sorted(used - set(names))}"
    # Every dashboard expression parses (promtool checks them as recording rules).
    rules = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"panel:{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [_need("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_docs_list_every_metric() -> None:
    text = DOCS.read_text()
    families = {
        name.removesuffix(s)
        for name, kind in exposed_names().items()
        for s in _SUFFIXES[kind]
        if s and name.endswith(s)
    }
    families |= {name for name, kind in exposed_names().items() if kind == "gauge"}
    missing = sorted(f for f in families if f.startswith("myko_") and f"`{f}" not in text)
    assert not missing, f"docs/observability.md does not describe {missing}"
