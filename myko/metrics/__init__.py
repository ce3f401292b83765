"""Prometheus metrics: one registry per service process, built at its entry point and passed in.

    metrics = Metrics.for_process("command", instance_id)   # runner.py, gateway/__main__.py
    service = CommandService(settings, app, metrics=metrics)
    MetricsServer(metrics, host, port)                       # GET /metrics

Nothing registers on prometheus_client's global REGISTRY. Each area's metric
families live in their own module (rpc, command, consumer, live, saga,
quarantine, gateway) and are created on the process's registry the first time
a component asks for them (`metrics.rpc`, `metrics.command`, ...), so a
process exposes only the families of what it runs. Label values are bounded
(method names, status codes, registered type names, topic-partitions read,
saga names), never an entity id or a tx. Hot paths hold pre-bound label
children. docs/observability.md lists every metric.
"""

from myko.metrics.registry import Metrics
from myko.metrics.server import MetricsServer

__all__ = ["Metrics", "MetricsServer"]
