"""The `myko` command: scaffold an application, generate its code, run it locally, serve one service.

    myko new notes            # a new project in ./notes (protos, handlers, a test, a UI page)
    myko gen [--check]        # Python (and TypeScript) from the project's .proto files
    myko run [--port-shift N] # Kafka + every service + the gateway for the project; Ctrl-C stops all
    myko run --idp idp        # ... behind the local identity provider (sign in as a demo user)
    myko serve command        # one service, configured by MYKO_* variables (what containers run)
    myko certs --dir pki      # a CA and a certificate per service (mutual TLS, docs/security.md)
    myko kafka-access         # each service's Kafka user and ACLs (docs/security.md)
    myko stack-secrets DIR    # every secret of the secured Swarm stack, as files (docs/deploy.md)
    myko token alice          # an access token from that provider (a demo user or service client)
    myko revoke bob           # end every session of a subject now (an admin's token in MYKO_TOKEN)

`gen` and `run` find the project (a pyproject.toml with [tool.myko]) from the
working directory upwards, or take --project. docs/authoring.md walks through it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from myko import catalogue
from myko.errors import ConfigError
from myko.project import Project, find_project, load_project

PROG = "myko"


def _project(arg: Path | None) -> Project:
    return load_project(arg) if arg is not None else find_project(Path.cwd())


def cmd_new(args: argparse.Namespace) -> int:
    from myko import scaffold

    dest: Path = args.dir or Path.cwd() / args.name
    written = scaffold.create(args.name, dest)
    print(f"Created {args.name} in {dest} ({len(written)} files). Next:")
    print(f"  cd {dest}")
    print("  (cd ui && npm install)        # the UI's packages, with protoc-gen-es for myko gen")
    print("  myko gen                      # Python and TypeScript from proto/ (after every change)")
    print("  pip install -e '.[dev]'       # the app, pytest and mypy")
    print("  pytest                        # the scaffolded test, against a real Kafka")
    print("  (cd ui && npm run build)      # ui/dist, which the gateway serves")
    print("  myko run                      # Kafka, every service, the gateway and the UI")
    return 0


def cmd_gen(args: argparse.Namespace) -> int:
    from myko.codegen import generate_project

    project = _project(args.project)
    report = generate_project(project, check=args.check)
    for note in report.notes:
        print(f"myko gen: {note}", file=sys.stderr)
    if report.problems:
        print("generated code is stale; run `myko gen`:\n  " + "\n  ".join(report.problems), file=sys.stderr)
        return 1
    if not args.check:
        for path in report.written:
            print(f"wrote {_rel(path)}/")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from myko.local.launcher import LaunchOptions, launch

    env = os.environ
    project: Project | None = None
    if args.project is not None or not args.app:
        project = _project(args.project)
    app = args.app or (project.app if project else "")
    kafka = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if args.no_kafka and not kafka:
        raise ConfigError("--no-kafka needs KAFKA_BOOTSTRAP_SERVERS (the Kafka to use instead)")
    base = args.run_dir or (project.root if project else Path.cwd()) / ".run"
    # A shifted stack must not share Kafka data or logs with the unshifted one.
    run_dir = base / f"shift-{args.port_shift}" if args.port_shift else base
    ui_dist: Path | None = args.ui_dist or (project.ui_dist if project else None)
    if ui_dist is not None and not (ui_dist / "index.html").is_file():
        if args.ui_dist is not None:
            raise ConfigError(f"--ui-dist {ui_dist} has no index.html")
        ui_dist = None  # not built: the gateway serves the API only
    options = LaunchOptions(
        app=app,
        run_dir=run_dir,
        project_dir=project.root if project else None,
        ui_dist=ui_dist,
        cluster=args.cluster,
        fresh=args.fresh,
        port_shift=args.port_shift,
        kafka=kafka,
        passthrough={k: v for k, v in env.items() if k.startswith("MYKO_") and k != "MYKO_APP"},
        prometheus=args.prometheus,
        idp_package=args.idp,
        **({"access_token_ttl_s": args.token_ttl} if args.token_ttl else {}),
    )
    return launch(options)


def cmd_serve(args: argparse.Namespace) -> int:
    spec = catalogue.service(args.service)
    importlib.import_module(spec.module).main()
    return 0


def cmd_certs(args: argparse.Namespace) -> int:
    from myko.pki import CA_CERT, CA_KEY, CertificateAuthority

    directory: Path = args.dir
    made = not (directory / CA_CERT).exists()
    ca = CertificateAuthority.open(directory)
    print(
        f"{'created' if made else 'using'} the CA {_rel(directory / CA_CERT)} (key {_rel(directory / CA_KEY)})"
    )
    for name in args.names or [s.name for s in catalogue.SERVICES]:
        files = ca.issue(name, hosts=[*args.host, name, f"tasks.{name}"], days=args.days)
        print(f"issued {_rel(files.cert)} and {_rel(files.key)} (identity {name!r})")
    print(
        f"Keep {_rel(directory / CA_KEY)} off the servers; docs/deploy.md turns the rest into Swarm secrets."
    )
    return 0


def cmd_stack_secrets(args: argparse.Namespace) -> int:
    from myko.stack_secrets import make_stack_secrets

    made = make_stack_secrets(args.dir, hosts=args.host, idp_hosts=args.idp_host)
    print(f"{len(made)} secrets in {_rel(args.dir)}; on a Swarm manager:")
    for name, path in made.items():
        print(f"  docker secret create {name} {_rel(path)}")
    print(f"Keep {_rel(args.dir / 'pki' / 'ca.key')} (the CA's key) offline: no service needs it.")
    return 0


def cmd_kafka_access(args: argparse.Namespace) -> int:
    from myko import kafka_access

    return kafka_access.main(["--list"] if args.list else [])


def cmd_revoke(args: argparse.Namespace) -> int:
    import asyncio
    import uuid

    from myko.client import Client
    from myko.errors import MykoError
    from myko.status import code_of
    from myko.v1 import identity_pb2

    # From the environment, never the command line: argv is visible to every user of the machine.
    token = os.environ.get("MYKO_TOKEN", "").strip()
    metadata = (("authorization", f"Bearer {token}"),) if token else ()

    async def revoke() -> str:
        async with Client(command_addr=args.command_addr, metadata=metadata) as client:
            result = await client.execute(
                identity_pb2.RevokeTokens(subject=args.subject), tx=str(uuid.uuid4())
            )
            return result.tx

    try:
        tx = asyncio.run(revoke())
    except MykoError as e:
        print(f"{PROG} revoke: {code_of(e).name}: {e.message}", file=sys.stderr)
        return 1
    print(f"revoked the tokens {args.subject!r} holds now (tx {tx}); their open streams end within seconds")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from myko.local.idp import token_from_run_dir
    from myko.local.idp_tokens import TokenRequestFailed

    try:
        token = token_from_run_dir(args.run_dir / "idp", args.who)
    except TokenRequestFailed as e:
        print(f"{PROG} token: {e} (is `make run` / `myko run --idp` running?)", file=sys.stderr)
        return 1
    print(token.access_token)
    return 0


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=PROG, description="Myko: build and run event-sourced applications.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    new = sub.add_parser("new", help="scaffold an application in a new directory")
    new.add_argument("name", help="the application's name: its Python and proto package (e.g. notes)")
    new.add_argument("--dir", type=Path, default=None, help="where to create it (default: ./NAME)")
    new.set_defaults(func=cmd_new)

    gen = sub.add_parser("gen", help="generate Python and TypeScript from the project's .proto files")
    gen.add_argument(
        "--project", type=Path, default=None, help="the project directory (default: found upwards)"
    )
    gen.add_argument("--check", action="store_true", help="only report generated code that is stale (exit 1)")
    gen.set_defaults(func=cmd_gen)

    run = sub.add_parser("run", help="start Kafka, every service and the gateway locally; Ctrl-C stops all")
    run.add_argument(
        "--project", type=Path, default=None, help="the project directory (default: found upwards)"
    )
    run.add_argument("--app", default="", help="the module exposing `app: myko.App` (default: the project's)")
    run.add_argument("--run-dir", type=Path, default=None, help="Kafka data and logs (default: PROJECT/.run)")
    run.add_argument(
        "--ui-dist", type=Path, default=None, help="the built UI to serve (default: PROJECT/ui/dist)"
    )
    run.add_argument("--cluster", action="store_true", help="3 Kafka nodes and two replicas of each service")
    run.add_argument("--fresh", action="store_true", help="delete the local Kafka data first")
    run.add_argument(
        "--prometheus",
        action="store_true",
        help="also start Prometheus (Debian's package) scraping every service, with Myko's alert rules",
    )
    run.add_argument(
        "--port-shift",
        type=int,
        default=0,
        metavar="N",
        help="add N to every port (Kafka's too) to run beside another stack; the gateway's must stay "
        "a port browsers open (docs/running-locally.md)",
    )
    run.add_argument(
        "--no-kafka", action="store_true", help="start no Kafka: use KAFKA_BOOTSTRAP_SERVERS (required then)"
    )
    run.add_argument(
        "--idp",
        type=Path,
        default=None,
        metavar="DIR",
        help="start the local identity provider from this npm package (server.mjs, oidc-provider installed) "
        "and require its tokens; without it (and without MYKO_OIDC_ISSUER) the services run with "
        "MYKO_AUTH_DISABLED=true (docs/security.md)",
    )
    run.add_argument(
        "--token-ttl",
        type=int,
        default=0,
        metavar="SECONDS",
        help="access-token lifetime at the local identity provider (default: 300)",
    )
    run.set_defaults(func=cmd_run)

    certs = sub.add_parser("certs", help="make a CA (once) and issue service certificates for mutual TLS")
    certs.add_argument(
        "names", nargs="*", help="identities to issue (default: every service of the catalogue)"
    )
    certs.add_argument(
        "--dir", type=Path, default=Path("pki"), help="where the CA and certificates go (./pki)"
    )
    certs.add_argument(
        "--host", action="append", default=[], help="another DNS name or IP the certificates are valid for"
    )
    certs.add_argument("--days", type=int, default=365, help="validity of the service certificates (365)")
    certs.set_defaults(func=cmd_certs)

    access = sub.add_parser(
        "kafka-access",
        help="create each service's Kafka user and ACLs (an admin's MYKO_KAFKA_* credentials, MYKO_APP)",
    )
    access.add_argument("--list", action="store_true", help="print the ACLs instead of creating anything")
    access.set_defaults(func=cmd_kafka_access)

    stack = sub.add_parser("stack-secrets", help="make every secret of the secured Swarm stack as files")
    stack.add_argument("dir", type=Path, help="where to write them (kept: run again to add what is missing)")
    stack.add_argument(
        "--host", action="append", default=[], help="another DNS name or IP the certificates are valid for"
    )
    stack.add_argument(
        "--idp-host",
        action="append",
        default=[],
        help="the host of the stack's issuer URL (MYKO_OIDC_ISSUER), for the identity provider's certificate",
    )
    stack.set_defaults(func=cmd_stack_secrets)

    serve = sub.add_parser("serve", help="run one service in the foreground (settings from MYKO_* variables)")
    serve.add_argument("service", choices=[s.name for s in catalogue.SERVICES])
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser(
        "token",
        help="print an access token from the local identity provider of `myko run --idp` "
        "(a demo user, signed in with the demo password, or a service client)",
    )
    token.add_argument(
        "who", help="a demo user (alice, bob, carol, dave) or a service client (tests-north, ...)"
    )
    token.add_argument(
        "--run-dir",
        type=Path,
        default=Path(".run"),
        help="the run directory of `myko run` (default: %(default)s)",
    )
    token.set_defaults(func=cmd_token)

    revoke = sub.add_parser(
        "revoke",
        help="revoke every token a subject holds now (needs an admin's token in MYKO_TOKEN; docs/security.md)",
    )
    revoke.add_argument("subject", help="the subject (the tokens' sub claim)")
    revoke.add_argument(
        "--command-addr",
        default=os.environ.get("MYKO_COMMAND_ADDR", catalogue.COMMAND.default_addr),
        help="command_svc (default: MYKO_COMMAND_ADDR or %(default)s)",
    )
    revoke.set_defaults(func=cmd_revoke)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as e:
        print(f"{PROG} {args.command}: {e.message}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
