"""Deploy the Swarm stack on this machine's Docker engine, and take it all away again.

    python -m devtools.swarm up [--base auto|official|debian] [--no-build] [--port 8080] [--plaintext]
    python -m devtools.swarm down
    python -m devtools.swarm status
    python -m devtools.swarm idp-secrets     # the provider's secrets as files, for a swarm deployed by hand

`up` (`make swarm-up`):
  1. initialises a single-node swarm if the engine is in none (and marks the
     node, so that `down` leaves only a swarm it made);
  2. builds the images (devtools/images.py) and deploys them, unless
     MYKO_IMAGE / MYKO_KAFKA_IMAGE / MYKO_PROMETHEUS_IMAGE name others; Grafana
     (MYKO_GRAFANA_IMAGE, the official image by default) is left out when its
     image is neither on the engine nor pullable;
  3. labels the node for the brokers' placement (kafka-1, kafka-2, kafka-3);
  4. creates the stack's external secrets and configs that are missing:
     the secured stack's certificates (a CA made for this swarm) and Kafka
     passwords come from `myko stack-secrets` into .run/swarm/secrets/ (the CA
     key stays there, never a secret); the identity provider's configuration
     (demo users with passwords made here, saga_svc's and the tests' clients),
     its signing keys and saga_svc's client secret from idp_secrets, into
     .run/swarm/secrets/idp/; GENERATED below has any others;
  5. deploys swarm/docker-stack.yml with swarm/docker-stack.security.yml on top
     (mutual TLS, HTTPS, Kafka SASL and ACLs; `--plaintext` leaves the overlay
     out) as stack `myko`, adapted to one node (devtools/swarm_profile.py; the
     file deployed is kept in .run/swarm/);
  6. waits until every task of every service runs and is healthy (one-shot
     services, such as kafka-access, until they completed), and prints the
     gateway's URL (https:// when secured; its certificate is from that CA)
     and how to sign in.

The issuer (MYKO_OIDC_ISSUER) is the stack's provider at its published port on
this node's address (`--public-host`, by default the node's address on
docker_gwbridge, which both this machine's browser and every container reach):
the same URL inside and outside the swarm, as tokens' `iss` must be. Set
MYKO_OIDC_ISSUER to use an issuer of your own instead (docs/deploy.md).

`down` (`make swarm-down`) removes the stack and waits until its containers and
networks are gone, removes its volumes (Kafka's data), the secrets and configs
`up` created and the node labels, and leaves the swarm if `up` made it.

For a real multi-node swarm, see docs/deploy.md: the same stack file, deployed
without this module's single-node adaptations.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from devtools import images, swarm_profile
from devtools.docker_cli import DockerCli, DockerError, find_cli
from myko.errors import ConfigError
from myko.local import idp
from myko.local.signing_keys import SigningKeys
from myko.stack_secrets import make_stack_secrets

ROOT = Path(__file__).resolve().parent.parent
STACK_FILE = ROOT / "swarm" / "docker-stack.yml"
SECURITY_FILE = ROOT / "swarm" / "docker-stack.security.yml"
RUN_DIR = ROOT / ".run" / "swarm"
# Kept between `up`s: a swarm's secrets and the files they came from must agree.
SECRETS_DIR = RUN_DIR / "secrets"
# A service labelled so runs once to completion (exit 0) instead of staying up.
ONE_SHOT_LABEL = "dev.myko.one-shot"
STACK_NAME = "myko"
STACK_LABEL = "com.docker.stack.namespace"
# On the node (swarm made by `up`) and on secrets and configs `up` created.
CREATED_LABEL = "dev.myko.swarm-up"
BROKER_LABELS = ("kafka-1", "kafka-2", "kafka-3")
DEFAULT_PORT = 8080
PORT_VAR = "MYKO_GATEWAY_PUBLISHED_PORT"
IMAGE_VAR = "MYKO_IMAGE"
KAFKA_IMAGE_VAR = "MYKO_KAFKA_IMAGE"
PROMETHEUS_IMAGE_VAR = "MYKO_PROMETHEUS_IMAGE"
GRAFANA_IMAGE_VAR = "MYKO_GRAFANA_IMAGE"
IDP_IMAGE_VAR = "MYKO_IDP_IMAGE"
IDP_PORT_VAR = "MYKO_IDP_PUBLISHED_PORT"
DEFAULT_IDP_PORT = 8443
ISSUER_VAR = "MYKO_OIDC_ISSUER"
PUBLIC_HOST_VAR = "MYKO_SWARM_PUBLIC_HOST"
IDP_SECRETS_DIR = SECRETS_DIR / "idp"
# Where the provider finds its keys in its container (the secret myko_idp_keys).
IDP_KEYS_TARGET = "/run/secrets/idp_keys"
# The stack's service clients: saga_svc's identity, and the tests' (operators of
# a tenant, and a viewer) that the live-swarm test and the browser tests call as.
STACK_CLIENTS = (
    idp.SAGA_CLIENT,
    *idp.TEST_CLIENTS,
    idp.ServiceClient(client_id="tests-viewer", roles=("viewer",), tenant="north"),
)
DEFAULT_GRAFANA_IMAGE = "grafana/grafana-oss:10.4.2"
HEALTHY_TIMEOUT_S = 600.0
GONE_TIMEOUT_S = 180.0
POLL_S = 2.0

# External secrets and configs `up` makes when missing, by name: a stack that
# declares `secrets: {x: {external: true}}` gets x from here (the secured
# stack's own come from secured_secrets).
GENERATED: dict[str, Callable[[], str]] = {
    # Grafana's admin password (read it with the docker secret's creator, or reset it
    # with grafana-cli inside the container): never the image's admin/admin.
    "grafana_admin_password": lambda: secrets.token_urlsafe(24),
}


def secured_secrets(directory: Path = SECRETS_DIR, *, idp_host: str = "") -> dict[str, Callable[[], str]]:
    """The secured stack's secrets by name, each read from the file `myko stack-secrets` made.

    One CA for all: the files are made (or kept) together, in `directory`.
    """
    idp_cert = directory / "pki" / "idp.crt"
    if idp_host and idp_cert.exists() and idp_host not in _cert_hosts(idp_cert):
        # Made for another address: reissued (a swarm that still holds the old secret keeps it).
        idp_cert.unlink()
    # Certificates name localhost and 127.0.0.1 too: the gateway's host-mode port is on this node.
    files = make_stack_secrets(directory, idp_hosts=[idp_host] if idp_host else [])
    return {name: functools.partial(path.read_text, encoding="utf-8") for name, path in files.items()}


def _cert_hosts(path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {
        str(v) for v in (*san.get_values_for_type(x509.DNSName), *san.get_values_for_type(x509.IPAddress))
    }


@dataclass(frozen=True)
class StackIdentity:
    """The stack's provider as a client outside the swarm sees it (from idp_secrets' files)."""

    issuer: str
    audience: str
    # client id -> secret, and user name -> password (the demo users).
    clients: dict[str, str]
    passwords: dict[str, str]
    # The CA its certificate (and the gateway's) is from; None on a plaintext stack.
    ca_file: Path | None


def idp_secret_files(directory: Path = IDP_SECRETS_DIR) -> dict[str, Path]:
    """The provider's secrets by name -> the file holding each: configuration, signing keys,
    saga_svc's client secret.

    Made once into `directory` and kept (the swarm's secrets must agree with the
    files): demo users with random passwords, random client secrets.
    """
    directory.mkdir(parents=True, exist_ok=True)
    keys = SigningKeys.load_or_create(directory / "keys.json")
    config_path = directory / "config.json"
    if not config_path.exists():
        users = [replace(u, password=secrets.token_urlsafe(12)) for u in idp.DEMO_USERS]
        clients = [replace(c, secret=secrets.token_urlsafe(24)) for c in STACK_CLIENTS]
        config = idp.provider_config(
            # Issuer, address and UI origins come from the service's environment (idp/server.mjs).
            issuer="",
            port=DEFAULT_IDP_PORT,
            host="0.0.0.0",
            audience=idp.AUDIENCE,
            access_token_ttl_s=idp.DEFAULT_ACCESS_TOKEN_TTL_S,
            jwks_file=IDP_KEYS_TARGET,
            users=users,
            clients=clients,
            ui_origins=[],
        )
        _write_private(config_path, json.dumps(config, indent=2))
    config = json.loads(config_path.read_text())
    saga = next(c["secret"] for c in config["serviceClients"] if c["clientId"] == idp.SAGA_CLIENT.client_id)
    saga_path = directory / "saga_client.secret"
    if not saga_path.exists() or saga_path.read_text() != saga:
        _write_private(saga_path, str(saga))
    return {"myko_idp_config": config_path, "myko_idp_keys": keys.path, "myko_saga_client_secret": saga_path}


def idp_secrets(directory: Path = IDP_SECRETS_DIR) -> dict[str, Callable[[], str]]:
    """The provider's secrets by name, each read from its file (idp_secret_files)."""
    return {
        name: functools.partial(path.read_text, encoding="utf-8")
        for name, path in idp_secret_files(directory).items()
    }


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def stack_identity(issuer: str, *, secure: bool, directory: Path = IDP_SECRETS_DIR) -> StackIdentity:
    config = json.loads((directory / "config.json").read_text())
    return StackIdentity(
        issuer=issuer,
        audience=str(config["audience"]),
        clients={c["clientId"]: c["secret"] for c in config["serviceClients"]},
        passwords={u["username"]: u["password"] for u in config["users"]},
        ca_file=SECRETS_DIR / "pki" / "ca.crt" if secure else None,
    )


def public_host(docker: DockerCli) -> str:
    """The address of this node that browsers here and every container reach (MYKO_SWARM_PUBLIC_HOST).

    By default its address on docker_gwbridge, the bridge `swarm init` makes for
    the tasks' traffic out of the overlay: containers route through it, and it
    is an address of this machine. Not 127.0.0.1, which is each container's own.
    """
    given = os.environ.get(PUBLIC_HOST_VAR, "").strip()
    if given:
        return given
    gateway = docker.run(
        ["network", "inspect", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{end}}", "docker_gwbridge"],
        check=False,
    ).stdout.split()
    if not gateway:
        raise ConfigError(f"docker_gwbridge has no address: set {PUBLIC_HOST_VAR} to this node's address")
    return gateway[0]


@dataclass
class Deployment:
    url: str
    port: int
    image: str
    kafka_image: str
    ipvs: bool
    stack_name: str
    identity: StackIdentity | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


# -- the engine and the swarm ------------------------------------------------------------------


def swarm_state(docker: DockerCli) -> str:
    """ "inactive", "active", "pending", "error" or "locked" (docker info's LocalNodeState)."""
    return docker.out("info", "--format", "{{.Swarm.LocalNodeState}}")


def node_id(docker: DockerCli) -> str:
    return docker.out("info", "--format", "{{.Swarm.NodeID}}")


def ensure_swarm(docker: DockerCli, advertise_addr: str) -> bool:
    """Initialise a single-node swarm if there is none; True when this call made it."""
    state = swarm_state(docker)
    if state == "active":
        if docker.out("info", "--format", "{{.Swarm.ControlAvailable}}") != "true":
            raise ConfigError("this engine is a swarm worker: run `make swarm-up` on a manager")
        return False
    if state != "inactive":
        raise ConfigError(f"the engine's swarm is {state!r}: fix or leave it (docker swarm leave --force)")
    docker.out("swarm", "init", "--advertise-addr", advertise_addr)
    docker.out("node", "update", "--label-add", f"{CREATED_LABEL}=created", node_id(docker))
    return True


def swarm_made_by_us(docker: DockerCli) -> bool:
    if swarm_state(docker) != "active":
        return False
    labels = docker.out("node", "inspect", "--format", "{{json .Spec.Labels}}", node_id(docker))
    return f'"{CREATED_LABEL}":"created"' in labels


def has_ipvs() -> bool:
    """Whether this kernel can do IPVS (Swarm's virtual IPs and routing mesh).

    /proc/net/ip_vs appears once the module is loaded, which dockerd does on
    demand; a kernel built without it never has it.
    """
    if Path("/proc/net/ip_vs").exists():
        return True
    # Best effort: modprobe is absent where modules cannot be loaded anyway.
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(["modprobe", "ip_vs"], capture_output=True, timeout=30, check=False)
    return Path("/proc/net/ip_vs").exists()


def label_node(docker: DockerCli, *, add: bool) -> None:
    node = node_id(docker)
    if add:
        args = [a for label in BROKER_LABELS for a in ("--label-add", f"{label}=true")]
    else:
        args = [a for label in BROKER_LABELS for a in ("--label-rm", label)]
    docker.run(["node", "update", *args, node], check=add)


# -- secrets and configs -----------------------------------------------------------------------


def external_objects(stack: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, name) of every external secret and config the stack uses ("secret" or "config")."""
    out = []
    for kind in ("secrets", "configs"):
        for key, entry in (stack.get(kind) or {}).items():
            if isinstance(entry, dict) and entry.get("external"):
                out.append((kind[:-1], str(entry.get("name") or key)))
    return out


def ensure_external(
    docker: DockerCli, stack: Mapping[str, Any], generated: Mapping[str, Callable[[], str]] = GENERATED
) -> list[str]:
    """Create the missing external secrets and configs from `generated`; returns the names made."""
    made = []
    for kind, name in external_objects(stack):
        if docker.run([kind, "inspect", name], check=False).returncode == 0:
            continue
        make = generated.get(name)
        if make is None:
            raise ConfigError(
                f"the stack needs the external {kind} {name!r}, which does not exist and "
                f"devtools/swarm.py cannot make: `docker {kind} create {name} <file>`"
            )
        docker.run([kind, "create", "--label", f"{CREATED_LABEL}=created", name, "-"], input_text=make())
        made.append(f"{kind} {name}")
    return made


def remove_created_objects(docker: DockerCli) -> None:
    for kind in ("secret", "config"):
        names = docker.out(kind, "ls", "-q", "--filter", f"label={CREATED_LABEL}=created").split()
        if names:
            docker.run([kind, "rm", *names], check=False)


# -- deploy and wait ---------------------------------------------------------------------------


def load_stack(path: Path = STACK_FILE, *overlays: Path) -> dict[str, Any]:
    """The stack file with `overlays` on top, merged as `docker stack deploy -c … -c …` would."""
    stacks = []
    for file in (path, *overlays):
        loaded = yaml.safe_load(file.read_text())
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file} is not a compose file")
        stacks.append(loaded)
    merged = stacks[0]
    for extra in stacks[1:]:
        merged = swarm_profile.overlay(merged, extra)
    return merged


def stack_files(*, secure: bool) -> list[Path]:
    return [STACK_FILE, SECURITY_FILE] if secure else [STACK_FILE]


def one_shot_services(stack: Mapping[str, Any]) -> set[str]:
    """Services that run once to completion (deploy label ONE_SHOT_LABEL)."""
    return {
        name
        for name, service in (stack.get("services") or {}).items()
        if str(((service.get("deploy") or {}).get("labels") or {}).get(ONE_SHOT_LABEL, "")).lower() == "true"
    }


def completed(docker: DockerCli, service: str) -> bool:
    """Whether a task of `service` ran to completion (exit 0)."""
    states = docker.out("service", "ps", "--format", "{{.CurrentState}}", service).splitlines()
    return any(state.startswith("Complete") for state in states)


def write_deployed(stack: Mapping[str, Any], stack_name: str) -> Path:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    out = RUN_DIR / f"{stack_name}.yml"
    header = "# Written by devtools/swarm.py from swarm/docker-stack.yml (see devtools/swarm_profile.py).\n"
    out.write_text(header + yaml.safe_dump(dict(stack), sort_keys=False))
    return out


def service_replicas(docker: DockerCli, stack_name: str = STACK_NAME) -> dict[str, tuple[int, int]]:
    """service -> (running and healthy tasks, desired tasks)."""
    out = docker.out(
        "service",
        "ls",
        "--filter",
        f"label={STACK_LABEL}={stack_name}",
        "--format",
        "{{.Name}} {{.Replicas}}",
    )
    replicas = {}
    for line in out.splitlines():
        name, counts = line.split()[:2]
        running, desired = counts.split("/")[:2]
        replicas[name] = (int(running), int(desired))
    return replicas


def task_problems(docker: DockerCli, stack_name: str = STACK_NAME) -> list[str]:
    """The recent task errors of the stack, for a failure message."""
    out = docker.run(
        ["stack", "ps", stack_name, "--no-trunc", "--format", "{{.Name}} {{.CurrentState}} {{.Error}}"],
        check=False,
    ).stdout
    return [line for line in out.splitlines() if "Running" not in line][:30]


def wait_healthy(
    docker: DockerCli,
    *,
    expected: int,
    timeout_s: float = HEALTHY_TIMEOUT_S,
    stack_name: str = STACK_NAME,
    one_shot: Collection[str] = (),
) -> float:
    """Until the stack's `expected` services all run every replica healthy; returns the seconds.

    A `one_shot` service (name without the stack's prefix) counts once a task completed.
    """
    began = time.monotonic()
    last = ""
    done: set[str] = set()
    while True:
        replicas = service_replicas(docker, stack_name)
        jobs = {n for n in replicas if n.removeprefix(stack_name + "_") in one_shot}
        done.update(n for n in jobs - done if completed(docker, n))
        # A job counts when it completed, not while it runs (what follows needs its work done).
        pending = {
            n: rd
            for n, rd in replicas.items()
            if (n in jobs and n not in done) or (n not in jobs and (rd[0] != rd[1] or rd[1] == 0))
        }
        if len(replicas) == expected and not pending:
            return time.monotonic() - began
        status = " ".join(
            f"{n.removeprefix(stack_name + '_')}={r}/{d}" for n, (r, d) in sorted(pending.items())
        )
        if status != last:
            print(
                f"  {time.monotonic() - began:5.0f}s waiting: {status or 'services being created'}",
                flush=True,
            )
            last = status
        if time.monotonic() - began > timeout_s:
            problems = "\n    ".join(task_problems(docker, stack_name))
            raise DockerError(f"not healthy within {timeout_s:.0f}s: {status}\n    {problems}")
        time.sleep(POLL_S)


def up(
    docker: DockerCli,
    *,
    base: images.Base = images.Base.AUTO,
    build: bool = True,
    port: int = DEFAULT_PORT,
    advertise_addr: str = "127.0.0.1",
    ipvs: bool | None = None,
    timeout_s: float = HEALTHY_TIMEOUT_S,
    stack_name: str = STACK_NAME,
    secure: bool = True,
    idp_port: int = DEFAULT_IDP_PORT,
) -> Deployment:
    seconds: dict[str, float] = {}
    sizes: dict[str, int] = {}
    if ensure_swarm(docker, advertise_addr):
        print(f"initialised a single-node swarm (advertised on {advertise_addr})", flush=True)
    image = os.environ.get(IMAGE_VAR, "").strip()
    kafka_image = os.environ.get(KAFKA_IMAGE_VAR, "").strip()
    prometheus_image = os.environ.get(PROMETHEUS_IMAGE_VAR, "").strip()
    idp_image = os.environ.get(IDP_IMAGE_VAR, "").strip()
    if build and not (image and kafka_image and prometheus_image and idp_image):
        built = images.build_all(docker, base=base)
        print(built.summary(), flush=True)
        seconds.update({f"build {k}": v for k, v in built.seconds.items()})
        sizes.update(built.sizes)
        image, kafka_image = image or built.myko, kafka_image or built.kafka
        prometheus_image = prometheus_image or built.prometheus
        idp_image = idp_image or built.idp
    prometheus_image = prometheus_image or images.PROMETHEUS_TAG
    idp_image = idp_image or images.idp_tag()
    grafana_image = os.environ.get(GRAFANA_IMAGE_VAR, "").strip() or DEFAULT_GRAFANA_IMAGE
    image = image or images.myko_tag()
    kafka_image = kafka_image or images.kafka_tag()
    label_node(docker, add=True)
    stack = load_stack(*stack_files(secure=secure))
    if "grafana" in stack["services"] and not images.can_get(docker, grafana_image):
        # Not buildable from Debian packages: the rest of the stack runs without it.
        del stack["services"]["grafana"]
        print(f"grafana left out: {grafana_image} is not on this engine and cannot be pulled", flush=True)
    scheme = "https" if secure else "http"
    host = public_host(docker)
    # The stack's own provider unless the operator names an issuer.
    issuer = os.environ.get(ISSUER_VAR, "").strip() or f"{scheme}://{host}:{idp_port}"
    ui_origins = [f"{scheme}://{h}:{port}" for h in ("127.0.0.1", "localhost", host)]
    generated = {**GENERATED, **idp_secrets(), **(secured_secrets(idp_host=host) if secure else {})}
    for made in ensure_external(docker, stack, generated):
        print(f"created {made}", flush=True)
    one_shot = one_shot_services(stack)
    ipvs = has_ipvs() if ipvs is None else ipvs
    phases = swarm_profile.start_phases(stack)
    deployed, notes = swarm_profile.single_node(stack, base_dir=STACK_FILE.parent, ipvs=ipvs)
    for note in notes:
        print(f"single node: {note}", flush=True)
    env = {
        IMAGE_VAR: image,
        KAFKA_IMAGE_VAR: kafka_image,
        PORT_VAR: str(port),
        PROMETHEUS_IMAGE_VAR: prometheus_image,
        GRAFANA_IMAGE_VAR: grafana_image,
        IDP_IMAGE_VAR: idp_image,
        IDP_PORT_VAR: str(idp_port),
        ISSUER_VAR: issuer,
        "MYKO_IDP_UI_ORIGINS": ",".join(dict.fromkeys(ui_origins)),
        # A plaintext stack fetches the keys over http, on this one machine.
        "MYKO_OIDC_ALLOW_HTTP": "false" if secure else "true",
    }
    print(f"deploying stack {stack_name} ({image}, {kafka_image}), each phase once the one before is healthy")
    began = time.monotonic()
    wanted: set[str] = set()
    for phase in phases:
        wanted.update(phase)
        path = write_deployed(swarm_profile.only_services(deployed, wanted), stack_name)
        # The last phase removes services an earlier version of the stack had.
        prune = ["--prune"] if phase is phases[-1] else []
        # Local images are in no registry: nothing to resolve to a digest.
        docker.run(
            ["stack", "deploy", *prune, "--resolve-image", "never", "-c", str(path), stack_name],
            env=env,
            timeout_s=300,
        )
        print(f"  {time.monotonic() - began:5.0f}s deployed {', '.join(phase)}", flush=True)
        left_s = timeout_s - (time.monotonic() - began)
        wait_healthy(docker, expected=len(wanted), timeout_s=left_s, stack_name=stack_name, one_shot=one_shot)
    seconds["deploy to healthy"] = time.monotonic() - began
    url = f"{scheme}://127.0.0.1:{port}/"
    identity = stack_identity(issuer, secure=secure)
    return Deployment(url, port, image, kafka_image, ipvs, stack_name, identity, seconds, sizes)


# -- tear down ---------------------------------------------------------------------------------


def _stack_leftovers(docker: DockerCli, stack_name: str) -> dict[str, list[str]]:
    label = f"label={STACK_LABEL}={stack_name}"
    return {
        "services": docker.out("service", "ls", "-q", "--filter", label).split(),
        "containers": docker.out("ps", "-aq", "--filter", label).split(),
        "networks": docker.out("network", "ls", "-q", "--filter", label).split(),
    }


def down(docker: DockerCli, *, stack_name: str = STACK_NAME, timeout_s: float = GONE_TIMEOUT_S) -> float:
    """Remove everything `up` made; returns the seconds it took."""
    began = time.monotonic()
    reachable, detail = docker.engine_reachable()
    if not reachable:
        raise ConfigError(f"no Docker engine answers ({docker.path}): {detail}")
    if swarm_state(docker) == "active":
        docker.run(["stack", "rm", stack_name], check=False)
        while any(_stack_leftovers(docker, stack_name).values()):
            if time.monotonic() - began > timeout_s:
                raise DockerError(
                    f"stack {stack_name} not gone in {timeout_s:.0f}s: {_stack_leftovers(docker, stack_name)}"
                )
            time.sleep(POLL_S)
        remove_created_objects(docker)
        label_node(docker, add=False)
    # Kafka's data: volumes outlive the stack unless removed (a task's container
    # may let go of its volume a moment after it is gone, hence the retries).
    while volumes := docker.out(
        "volume", "ls", "-q", "--filter", f"label={STACK_LABEL}={stack_name}"
    ).split():
        docker.run(["volume", "rm", *volumes], check=False)
        if time.monotonic() - began > timeout_s:
            raise DockerError(f"volumes still in use after {timeout_s:.0f}s: {volumes}")
        time.sleep(POLL_S)
    if swarm_made_by_us(docker):
        docker.out("swarm", "leave", "--force")
        # Made by `swarm init` for the tasks' outbound traffic, left behind by `leave`.
        docker.run(["network", "rm", "docker_gwbridge"], check=False)
        print("left the swarm swarm-up had made", flush=True)
    return time.monotonic() - began


# -- command line ------------------------------------------------------------------------------


def status(docker: DockerCli) -> int:
    if swarm_state(docker) != "active":
        print("no swarm")
        return 1
    print(docker.out("stack", "services", STACK_NAME) or f"no stack {STACK_NAME}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.swarm",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="init a swarm if needed, build, deploy, wait until healthy")
    p_up.add_argument(
        "--base",
        choices=[b.value for b in images.Base],
        default=os.environ.get(images.BASE_ENV, "auto") or "auto",
    )
    p_up.add_argument("--no-build", action="store_true", help="deploy the images already tagged")
    p_up.add_argument("--port", type=int, default=int(os.environ.get(PORT_VAR, DEFAULT_PORT)))
    p_up.add_argument("--advertise-addr", default="127.0.0.1")
    p_up.add_argument("--idp-port", type=int, default=int(os.environ.get(IDP_PORT_VAR, DEFAULT_IDP_PORT)))
    p_up.add_argument("--timeout-s", type=float, default=HEALTHY_TIMEOUT_S)
    p_up.add_argument(
        "--plaintext",
        action="store_true",
        help="deploy without swarm/docker-stack.security.yml (no TLS, Kafka without SASL or ACLs)",
    )
    sub.add_parser("down", help="remove the stack, its volumes, and the swarm if `up` made it")
    sub.add_parser("status", help="the stack's services")
    sub.add_parser(
        "idp-secrets", help=f"make the identity provider's secrets in {IDP_SECRETS_DIR} (kept) and print them"
    )
    args = parser.parse_args(argv)
    if args.command == "idp-secrets":
        files = idp_secret_files()
        print(f"in {IDP_SECRETS_DIR}; on a Swarm manager:")
        for name, path in files.items():
            print(f"  docker secret create {name} {path}")
        return 0
    try:
        docker = find_cli()
        reachable, detail = docker.engine_reachable()
        if not reachable:
            raise ConfigError(f"no Docker engine answers ({docker.path}): {detail}")
        if args.command == "up":
            deployment = up(
                docker,
                base=images.Base(args.base),
                build=not args.no_build,
                port=args.port,
                advertise_addr=args.advertise_addr,
                timeout_s=args.timeout_s,
                secure=not args.plaintext,
                idp_port=args.idp_port,
            )
            for step, s in deployment.seconds.items():
                print(f"  {step:<40} {s:6.1f} s")
            print(f"Myko is up: {deployment.url}  (grpc-web and the UI; `make swarm-down` removes it)")
            if deployment.identity is not None:
                print(f"  sign in through {deployment.identity.issuer} as one of the demo users:")
                for user in idp.DEMO_USERS:
                    password = deployment.identity.passwords.get(user.username, "?")
                    print(f"    {user.username} / {password}  ({', '.join(user.roles)} in {user.tenant})")
            if not args.plaintext:
                print(
                    f"  its certificate is from the CA in {SECRETS_DIR / 'pki' / 'ca.crt'} (not a public one)"
                )
            return 0
        if args.command == "down":
            print(f"removed in {down(docker):.0f}s")
            return 0
        return status(docker)
    except (ConfigError, DockerError) as e:
        print(f"swarm: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
