"""What changes when swarm/docker-stack.yml runs on one machine rather than a cluster.

The stack file is written for a production swarm of several nodes. `make
swarm-up` deploys it on a single node, which needs three adaptations, applied
here to the loaded file (anchors merged, `${VARIABLES}` left for `docker stack
deploy` to fill in) and written out as the file actually deployed:

- **No reservations.** The stack reserves CPU and memory for three or more
  nodes; one small node cannot reserve them all, and Swarm would leave tasks
  pending forever. The limits stay.
- **Patient health checks.** Every task of the stack shares one machine's
  CPUs, so a probe can take seconds while the others start; a probe that times
  out counts as a failure, and a few in a row get a healthy task replaced, which
  loads the machine further. Here a probe may take 30 s and fail 5 times.
- **An attachable network**, so a tools container can join it
  (`docker run --network myko_myko ...`): the live-swarm test probes every task
  from inside, and an operator can do the same.
- **No IPVS** (some kernels, such as this CI's, are built without it): Swarm's
  virtual IPs and its ingress routing mesh both rest on IPVS. Without it every
  service resolves by DNS round robin (`endpoint_mode: dnsrr`, as the brokers
  always do), and published ports bind on the node itself (`mode: host`); a
  host port is one task's, so such a service runs one replica, replaced
  stop-first.

Swarm starts every service at once and ignores `depends_on`; on a small
machine the services then crash-loop against brokers that are still starting,
which slows everything down. So `make swarm-up` deploys in the order
`depends_on` gives (start_phases), each phase once the one before is healthy;
the deployed file has no `depends_on` left (Swarm would only warn about it).

New services, secrets and configs in the stack need nothing here: the rules
apply to whatever the file declares, and a new service's `depends_on` places it
in the start order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

Stack = dict[str, Any]


def _services(stack: Stack) -> dict[str, dict[str, Any]]:
    services = stack.get("services") or {}
    assert isinstance(services, dict)
    return services


def drop_reservations(stack: Stack) -> None:
    for service in _services(stack).values():
        resources = (service.get("deploy") or {}).get("resources")
        if isinstance(resources, dict):
            resources.pop("reservations", None)


PATIENT_TIMEOUT_S = 30
PATIENT_RETRIES = 5


def _seconds(value: object) -> float:
    """Seconds in a compose duration ("10s", "1m30s", "500ms") as written in the file."""
    text, total = str(value), 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
        total += float(number) * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}[unit]
    return total


def patient_health_checks(stack: Stack) -> None:
    for service in _services(stack).values():
        check = service.get("healthcheck")
        if not isinstance(check, dict) or check.get("disable"):
            continue
        if _seconds(check.get("timeout", "30s")) < PATIENT_TIMEOUT_S:
            check["timeout"] = f"{PATIENT_TIMEOUT_S}s"
        check["retries"] = max(int(check.get("retries", 3)), PATIENT_RETRIES)


def attachable_networks(stack: Stack) -> None:
    for network in (stack.get("networks") or {}).values():
        if isinstance(network, dict) and network.get("driver", "overlay") == "overlay":
            network["attachable"] = True


def without_ipvs(stack: Stack) -> list[str]:
    """DNS round robin everywhere, host-mode ports; returns what it had to change, for the log."""
    notes = []
    for name, service in _services(stack).items():
        deploy = service.setdefault("deploy", {})
        deploy["endpoint_mode"] = "dnsrr"
        ports = service.get("ports") or []
        if not ports:
            continue
        for port in ports:
            if not isinstance(port, dict):
                raise ValueError(f"{name}: write ports in the long syntax (target, published, mode)")
            port["mode"] = "host"
        if int(deploy.get("replicas", 1)) > 1:
            notes.append(f"{name}: 1 replica instead of {deploy['replicas']} (a host port holds one task)")
        deploy["replicas"] = 1
        update = deploy.setdefault("update_config", {})
        if update.get("order") != "stop-first":
            update["order"] = "stop-first"
            notes.append(f"{name}: updates stop-first (the new task needs the port the old one holds)")
    return notes


def absolute_files(stack: Stack, base_dir: Path) -> None:
    """Config and secret files relative to the original stack file, so the copy deploys from anywhere."""
    for kind in ("configs", "secrets"):
        for entry in (stack.get(kind) or {}).values():
            if isinstance(entry, dict) and "file" in entry:
                path = Path(entry["file"])
                entry["file"] = str(path if path.is_absolute() else (base_dir / path).resolve())


def start_phases(stack: Stack) -> list[list[str]]:
    """Services grouped by `depends_on` depth: each phase needs only the ones before it."""
    services = _services(stack)
    needs = {name: set(svc.get("depends_on") or ()) for name, svc in services.items()}
    for name, deps in needs.items():
        unknown = deps - set(services)
        if unknown:
            raise ValueError(f"{name} depends on {sorted(unknown)}, which the stack does not define")
    phases: list[list[str]] = []
    placed: set[str] = set()
    while len(placed) < len(services):
        ready = sorted(n for n, deps in needs.items() if n not in placed and deps <= placed)
        if not ready:
            raise ValueError(f"depends_on has a cycle among {sorted(set(services) - placed)}")
        phases.append(ready)
        placed.update(ready)
    return phases


def only_services(stack: Stack, names: set[str]) -> Stack:
    """The stack with just `names` among its services (networks, volumes, configs kept)."""
    out: Stack = json.loads(json.dumps(stack))
    out["services"] = {n: svc for n, svc in _services(out).items() if n in names}
    return out


# Service lists `docker stack deploy -c base -c overlay` merges by their `source`
# rather than replacing (docker/cli's compose loader does the same).
_MERGED_BY_SOURCE = ("secrets", "configs")


def _merge(base: Any, extra: Any, *, in_service: bool = False) -> Any:
    if isinstance(base, dict) and isinstance(extra, dict):
        out = dict(base)
        for key, value in extra.items():
            if key in out:
                if in_service and key in _MERGED_BY_SOURCE:
                    by_source = {ref["source"]: ref for ref in [*out[key], *value]}
                    out[key] = list(by_source.values())
                else:
                    out[key] = _merge(out[key], value)
            else:
                out[key] = value
        return out
    return extra


def overlay(base: Stack, extra: Stack) -> Stack:
    """`base` with `extra` on top, as `docker stack deploy -c base -c extra` merges them.

    Mappings merge key by key (a service's environment gains the overlay's
    variables), a service's secrets and configs by source, anything else the
    overlay names replaces the base's (depends_on, entrypoint). Anchors are merged
    already (YAML `<<`). tests/test_swarm_tools.py checks this against
    `docker stack config` where a docker client is installed.
    """
    out: Stack = json.loads(json.dumps(base))
    for key, value in extra.items():
        if key == "services":
            services = _services(out)
            for name, service in value.items():
                services[name] = (
                    _merge(services[name], service, in_service=True) if name in services else service
                )
        else:
            out[key] = _merge(out.get(key), value) if key in out else value
    return out


def single_node(stack: Stack, *, base_dir: Path, ipvs: bool) -> tuple[Stack, list[str]]:
    """The stack as `make swarm-up` deploys it; the input is left unchanged."""
    # Through JSON rather than deepcopy: YAML aliases share one object between
    # services (update_config, resources), which a copy would keep shared.
    out: Stack = json.loads(json.dumps(stack))
    # Anchors (x-...) are merged into the services already; the copies are noise.
    for key in [k for k in out if k.startswith("x-")]:
        del out[key]
    for service in _services(out).values():
        service.pop("depends_on", None)
    drop_reservations(out)
    patient_health_checks(out)
    attachable_networks(out)
    absolute_files(out, base_dir)
    notes = [
        "reservations dropped (one node cannot reserve a cluster's worth)",
        f"health checks: {PATIENT_TIMEOUT_S}s timeout, {PATIENT_RETRIES} retries (one busy node)",
    ]
    if not ipvs:
        notes.append("no IPVS in this kernel: DNS round robin and host-mode ports")
        notes += without_ipvs(out)
    return out, notes
