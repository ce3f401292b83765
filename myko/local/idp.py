"""A real OpenID Connect provider on 127.0.0.1 for local runs and tests: npm's oidc-provider.

    idp = LocalIdp(package_dir=Path("idp"), run_dir=Path(".run/idp"), ui_origins=["http://127.0.0.1:8080"])
    with idp:                                  # start() + wait until discovery answers
        env = idp.service_env()                # MYKO_OIDC_ISSUER / MYKO_OIDC_AUDIENCE for every service
        token = idp.tokens.client_credentials("saga_svc", idp.client("saga_svc").secret)
        alice = idp.tokens.sign_in("alice", "demo")  # the browser's code + PKCE flow, over HTTP

Started by `make run` / `myko run --idp` (myko/local/launcher.py), by the UI's
browser-test stack (devtools/ui_stack.py) and by test fixtures, the way Kafka
is. The provider is the Node program in the `idp/` npm workspace package
(idp/server.mjs); what it serves comes from here, written to `<run dir>/`:

- `keys.json`: the signing keys (myko/local/signing_keys.py). Made once per run
  directory and kept, so tests can sign tokens with the same keys and a restart
  does not invalidate every token; `rotate_keys()` rotates them.
- `config.json`: issuer, audience, access-token lifetime, the demo users, the
  UI's public client and the service clients with their (per run, random)
  secrets. Readable by its owner only.

`python -m myko.local.idp --package idp` runs one on its own (port 8090).
docs/security.md explains the choice of provider and how production points
MYKO_OIDC_ISSUER / MYKO_OIDC_AUDIENCE at any issuer instead.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType, TracebackType

from myko.errors import ConfigError
from myko.local.idp_tokens import IdpTokens, TokenSet
from myko.local.ports import free_port
from myko.local.procs import ServiceProcess
from myko.local.signing_keys import SigningKeys

DEFAULT_PORT = 8090
# The Myko API as a resource server: what access tokens' `aud` says (MYKO_OIDC_AUDIENCE).
# Resource indicators (RFC 8707) are absolute URIs.
AUDIENCE = "urn:myko:api"
UI_CLIENT_ID = "myko-ui"
# Where the UI's sign-in and sign-out come back to (ui/src/lib/auth.svelte.ts).
CALLBACK_PATH = "/auth/callback"
SIGNED_OUT_PATH = "/signed-out"
DEFAULT_ACCESS_TOKEN_TTL_S = 300
MIN_ACCESS_TOKEN_TTL_S = 5
SESSION_TTL_S = 8 * 3600
START_TIMEOUT_S = 60.0
NODE_ENV = "MYKO_NODE"
DEMO_PASSWORD = "demo"


@dataclass(frozen=True, kw_only=True)
class DemoUser:
    """Someone who can sign in with a password."""

    username: str
    password: str
    name: str
    roles: tuple[str, ...]
    tenant: str | None = None

    def describe(self) -> str:
        where = f" in {self.tenant}" if self.tenant else ""
        return f"{self.username} / {self.password}  ({', '.join(self.roles) or 'no roles'}{where})"


# The example domain's users (docs/security.md): two tenants, an operator and a viewer each.
DEMO_USERS = (
    DemoUser(username="alice", password=DEMO_PASSWORD, name="Alice", roles=("operator",), tenant="north"),
    DemoUser(username="bob", password=DEMO_PASSWORD, name="Bob", roles=("viewer",), tenant="north"),
    DemoUser(username="carol", password=DEMO_PASSWORD, name="Carol", roles=("operator",), tenant="south"),
    DemoUser(username="dave", password=DEMO_PASSWORD, name="Dave", roles=("viewer",), tenant="south"),
)


@dataclass(frozen=True, kw_only=True)
class ServiceClient:
    """A program with its own identity: OAuth client credentials (its tokens' `sub` is its id)."""

    client_id: str
    roles: tuple[str, ...] = ()
    tenant: str | None = None
    # Resource scopes it may ask for (space-separated); granted only when asked.
    scope: str = ""
    # Made per run when empty (LocalIdp.__init__).
    secret: str = field(default="", repr=False)


SAGA_CLIENT = ServiceClient(client_id="saga_svc")
# What tests call as: a service that may write in tenant north / south (e.g. seeding data).
TEST_CLIENTS = (
    ServiceClient(client_id="tests-north", roles=("operator",), tenant="north"),
    ServiceClient(client_id="tests-south", roles=("operator",), tenant="south"),
)


def provider_config(
    *,
    issuer: str,
    port: int,
    audience: str,
    access_token_ttl_s: int,
    jwks_file: str,
    users: Sequence[DemoUser],
    clients: Sequence[ServiceClient],
    ui_origins: Sequence[str],
    host: str = "127.0.0.1",
) -> dict[str, object]:
    """What idp/server.mjs reads from its --config file (secrets included: keep it private)."""
    return {
        "issuer": issuer,
        "host": host,
        "port": port,
        "audience": audience,
        "accessTokenTtlS": access_token_ttl_s,
        "sessionTtlS": SESSION_TTL_S,
        "jwksFile": jwks_file,
        "cookieKeys": [secrets.token_urlsafe(32)],
        "users": [
            {
                "username": u.username,
                "password": u.password,
                "name": u.name,
                "roles": list(u.roles),
                "tenant": u.tenant,
            }
            for u in users
        ],
        "uiClient": {
            "clientId": UI_CLIENT_ID,
            "origins": list(ui_origins),
            "redirectUris": [f"{o}{CALLBACK_PATH}" for o in ui_origins],
            "postLogoutRedirectUris": [f"{o}{SIGNED_OUT_PATH}" for o in ui_origins],
        },
        "serviceClients": [
            {
                "clientId": c.client_id,
                "secret": c.secret,
                "roles": list(c.roles),
                "tenant": c.tenant,
                "scope": c.scope,
            }
            for c in clients
        ],
    }


def find_node(env: Mapping[str, str] | None = None) -> str:
    """The `node` to run the provider with (MYKO_NODE overrides); ConfigError when there is none."""
    env = os.environ if env is None else env
    node = env.get(NODE_ENV, "").strip() or shutil.which("node")
    if not node:
        raise ConfigError(
            f"the local identity provider needs Node.js 20+ (`node` on the PATH, or {NODE_ENV})"
        )
    return node


def check_package(package_dir: Path) -> Path:
    """The provider's server.mjs in `package_dir`, once its npm packages are installed."""
    server = package_dir / "server.mjs"
    if not server.is_file():
        raise ConfigError(f"{package_dir} has no server.mjs: not the identity provider package (idp/)")
    # Installed either in the package or hoisted to an enclosing npm workspace.
    if not any((d / "node_modules" / "oidc-provider").is_dir() for d in (package_dir, *package_dir.parents)):
        raise ConfigError(
            f"oidc-provider is not installed for {package_dir}: run `npm install` "
            "(in this repository, `make setup`)"
        )
    return server


class LocalIdp:
    """The provider process, its configuration and keys in `run_dir`, and token helpers."""

    def __init__(
        self,
        *,
        package_dir: Path,
        run_dir: Path,
        ui_origins: Iterable[str] = (),
        port: int | None = None,
        access_token_ttl_s: int = DEFAULT_ACCESS_TOKEN_TTL_S,
        users: Sequence[DemoUser] = DEMO_USERS,
        service_clients: Sequence[ServiceClient] = (SAGA_CLIENT, *TEST_CLIENTS),
        node: str | None = None,
    ) -> None:
        if access_token_ttl_s < MIN_ACCESS_TOKEN_TTL_S:
            raise ConfigError(f"access tokens must live at least {MIN_ACCESS_TOKEN_TTL_S}s")
        self.package_dir = package_dir.resolve()
        self._server = check_package(self.package_dir)
        self._node = node or find_node()
        self.run_dir = run_dir.resolve()
        self.port = port or free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.audience = AUDIENCE
        self.access_token_ttl_s = access_token_ttl_s
        self.users = tuple(users)
        self.clients = tuple(
            c if c.secret else replace(c, secret=secrets.token_urlsafe(24)) for c in service_clients
        )
        origins = [o.rstrip("/") for o in ui_origins]
        self.ui_origins = tuple(dict.fromkeys(origins))
        self.keys = SigningKeys.load_or_create(self.run_dir / "keys.json")
        self.config_path = self.run_dir / "config.json"
        self.process = ServiceProcess(
            name="idp",
            command=[self._node, str(self._server), "--config", str(self.config_path)],
            health_url=f"{self.issuer}/.well-known/openid-configuration",
            log_path=self.run_dir / "idp.log",
            cwd=self.package_dir,
        )
        self.tokens = IdpTokens(
            issuer=self.issuer,
            ui_client_id=UI_CLIENT_ID,
            redirect_uri=f"{self.ui_origins[0]}{CALLBACK_PATH}" if self.ui_origins else "",
        )

    # -- what others need to know -----------------------------------------------------------

    def service_env(self) -> dict[str, str]:
        """What every Myko service needs to verify this provider's tokens."""
        return {"MYKO_OIDC_ISSUER": self.issuer, "MYKO_OIDC_AUDIENCE": self.audience}

    def saga_env(self) -> dict[str, str]:
        """saga_svc's own identity (client credentials)."""
        saga = self.client(SAGA_CLIENT.client_id)
        return {"MYKO_SAGA_CLIENT_ID": saga.client_id, "MYKO_SAGA_CLIENT_SECRET": saga.secret}

    def client(self, client_id: str) -> ServiceClient:
        for c in self.clients:
            if c.client_id == client_id:
                return c
        raise KeyError(client_id)

    def user(self, username: str) -> DemoUser:
        for u in self.users:
            if u.username == username:
                return u
        raise KeyError(username)

    @property
    def sign_in_url(self) -> str:
        """Where a person starts: the UI, which sends them to this provider's sign-in page."""
        return f"{self.ui_origins[0]}/" if self.ui_origins else self.issuer

    # -- lifecycle ---------------------------------------------------------------------------

    def write_config(self) -> None:
        config = provider_config(
            issuer=self.issuer,
            port=self.port,
            audience=self.audience,
            access_token_ttl_s=self.access_token_ttl_s,
            jwks_file=str(self.keys.path),
            users=self.users,
            clients=self.clients,
            ui_origins=self.ui_origins,
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2)
        tmp.replace(self.config_path)

    def start(self) -> LocalIdp:
        """Write the configuration and start the provider (wait_healthy() to know it answers)."""
        self.write_config()
        self.process.start()
        return self

    def wait_healthy(self, *, timeout_s: float = START_TIMEOUT_S) -> None:
        self.process.wait_healthy(timeout_s=timeout_s)

    def stop(self) -> None:
        self.process.stop()

    def rotate_keys(self) -> None:
        """A new signing key (the previous one stays published), served after a restart."""
        self.keys.rotate()
        if self.process.running:
            self.process.stop()
            self.start()
            self.wait_healthy()

    def __enter__(self) -> LocalIdp:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def token_from_run_dir(idp_dir: Path, who: str) -> TokenSet:
    """A token from the provider whose run directory is `idp_dir` (`myko run`'s `<run dir>/idp`): a demo user's
    (signed in with the demo password, as the UI would) or a service client's (client credentials).

    For people at a terminal (`myko token alice`, the README's grpcurl recipe); tests
    hold a LocalIdp and use its `tokens` instead.
    """
    path = idp_dir / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"no local identity provider has run in {idp_dir} (start one with `make run`)"
        ) from None
    ui = config["uiClient"]
    tokens = IdpTokens(
        issuer=config["issuer"],
        ui_client_id=ui["clientId"],
        redirect_uri=ui["redirectUris"][0] if ui["redirectUris"] else "",
    )
    for u in config["users"]:
        if u["username"] == who:
            return tokens.sign_in(who, u["password"])
    for c in config["serviceClients"]:
        if c["clientId"] == who:
            return tokens.client_credentials(who, c["secret"])
    known = [u["username"] for u in config["users"]] + [c["clientId"] for c in config["serviceClients"]]
    raise ConfigError(
        f"{who!r} is not a demo user or service client of {config['issuer']} ({', '.join(known)})"
    )


def describe(idp: LocalIdp) -> list[str]:
    """How to sign in, for a person reading a terminal."""
    lines = [f"  Sign in at {idp.sign_in_url}  (identity provider {idp.issuer})", "  Demo users:"]
    lines += [f"    {u.describe()}" for u in idp.users]
    return lines


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(
        prog="python -m myko.local.idp", description="Run the local OpenID Connect provider on its own."
    )
    ap.add_argument("--package", type=Path, default=Path("idp"), help="the idp/ npm package (server.mjs)")
    ap.add_argument("--run-dir", type=Path, default=Path(".run/idp"), help="keys, configuration and log")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument(
        "--ui-origin", action="append", default=[], help="a UI origin allowed to sign in (repeat)"
    )
    ap.add_argument(
        "--token-ttl", type=int, default=DEFAULT_ACCESS_TOKEN_TTL_S, help="access-token lifetime (s)"
    )
    ap.add_argument("--rotate-keys", action="store_true", help="rotate the signing keys first")
    args = ap.parse_args()
    try:
        idp = LocalIdp(
            package_dir=args.package,
            run_dir=args.run_dir,
            port=args.port,
            ui_origins=args.ui_origin or ["http://127.0.0.1:8080", "http://localhost:8080"],
            access_token_ttl_s=args.token_ttl,
        )
    except ConfigError as e:
        print(f"myko.local.idp: {e.message}", file=sys.stderr)
        return 2
    if args.rotate_keys:
        idp.keys.rotate()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with idp:
            print("\n".join(describe(idp)), flush=True)
            for c in idp.clients:
                print(f"  client {c.client_id}: secret {c.secret}", flush=True)
            signal.pause()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
