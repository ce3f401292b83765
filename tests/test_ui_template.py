"""The UI `myko new` scaffolds builds outside this repository, on the packed @myko/client.

Packs the client the way the wheel ships it (devtools/pack_client.py), renders
myko/templates/app/ui into a temporary directory beside the contract `myko new`
writes (the Notes app), vendors the tarball as `myko new` does, installs with
npm, generates the app's TypeScript with the template's own protoc-gen-es and
Myko's live definitions, then type-checks (svelte-check) and builds (vite).
Nothing resolves into this repository: the client comes from the tarball.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from pathlib import Path

import pytest
from grpc_tools import protoc

from devtools.pack_client import pack
from myko import client_package
from myko.codegen_ts import es_plugin_args, write_live_definitions

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "myko" / "templates" / "app" / "ui"
APP = "notes"
STEP_TIMEOUT_S = 600

# The contract `myko new notes` writes (myko/templates/app/proto).
PROTOS = {
    "entities.proto": """
syntax = "proto3";
package notes.v1;
import "myko/v1/item.proto";
message Note { myko.v1.MItem item = 1; string title = 2; string body = 3; bool archived = 4; }
""",
    "commands.proto": """
syntax = "proto3";
package notes.v1;
message AddNote { string title = 1; string body = 2; }
message ArchiveNote { string id = 1; }
""",
    "queries.proto": """
syntax = "proto3";
package notes.v1;
import "myko/v1/options.proto";
message OpenNotes { option (myko.v1.query) = { result: "notes.v1.Note" }; }
""",
    "reports.proto": """
syntax = "proto3";
package notes.v1;
import "myko/v1/options.proto";
message NoteCounts { option (myko.v1.report) = { result: "notes.v1.NoteCountsValue" }; }
message NoteCountsValue { int64 open = 1; int64 archived = 2; }
""",
}


def _render(dest: Path) -> None:
    for src in TEMPLATE.rglob("*.tmpl"):
        rel = Path(str(src.relative_to(TEMPLATE)).replace("__MYKO_NAME__", APP).removesuffix(".tmpl"))
        if rel.name.startswith("_dot_"):
            rel = rel.with_name("." + rel.name.removeprefix("_dot_"))
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(src.read_text().replace("__MYKO_NAME__", APP))


def _run(args: list[str], cwd: Path) -> str:
    began = time.monotonic()
    env = {k: v for k, v in os.environ.items() if not k.startswith("npm_")}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S)
    print(f"{time.monotonic() - began:6.1f}s  {' '.join(args[:3])}", flush=True)
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _generate_ts(proto_root: Path, ui: Path) -> None:
    out = ui / "src" / "gen"
    out.mkdir(parents=True)
    fds = proto_root / "set.fds"
    files = files_of_app()
    well_known = Path(protoc.__file__).parent / "_proto"
    plugin = ui / "node_modules" / ".bin" / "protoc-gen-es"
    includes = [f"-I{proto_root}", f"-I{ROOT / 'myko' / '_proto'}", f"-I{well_known}"]
    assert protoc.main(["protoc", *includes, *es_plugin_args(plugin, out, fds), *files]) == 0
    write_live_definitions(fds, files, out)


# npm pack, npm install, svelte-check and a build: minutes on a loaded machine.
@pytest.mark.timeout(1200)
def test_the_scaffolded_ui_type_checks_and_builds_on_the_packed_client(tmp_path: Path) -> None:
    assert not tmp_path.resolve().is_relative_to(ROOT)
    tarball = pack(tmp_path / "packed" / client_package.TARBALL)
    proto_root = tmp_path / "app" / "proto"
    (proto_root / APP / "v1").mkdir(parents=True)
    for name, text in PROTOS.items():
        (proto_root / APP / "v1" / name).write_text(text)
    ui = tmp_path / "app" / "ui"
    _render(ui)
    vendored = client_package.vendor(ui, source=tarball)
    assert vendored == ui / "vendor" / "myko-client.tgz"

    _run(["npm", "install", "--no-audit", "--no-fund", "--prefer-offline"], ui)
    installed = (ui / "node_modules" / "@myko" / "client").resolve()
    assert not installed.is_relative_to(ROOT) and (installed / "dist" / "index.js").is_file()
    _generate_ts(proto_root, ui)
    generated = (ui / "src" / "gen" / APP / "v1" / "queries_myko.ts").read_text()
    assert "export const OpenNotes: QueryDef<typeof OpenNotesSchema, typeof NoteSchema>" in generated
    assert (
        '"@myko/client/myko/v1/item_pb.js"'
        in (ui / "src" / "gen" / APP / "v1" / "entities_pb.ts").read_text()
    )

    _run(["npx", "svelte-check", "--tsconfig", "./tsconfig.json", "--fail-on-warnings"], ui)
    _run(["npx", "vite", "build", "--logLevel", "warn"], ui)
    bundle = "".join(p.read_text() for p in (ui / "dist" / "assets").glob("*.js"))
    # The client's LiveBus and the app's contract made it into the bundle.
    for proto in ("myko/v1/live.proto", *files_of_app()):
        assert _embedded(proto) in bundle, proto


def files_of_app() -> list[str]:
    return [f"{APP}/v1/{name}" for name in PROTOS]


def _embedded(proto: str) -> str:
    """How the start of a file's descriptor reads in protoc-gen-es's fileDesc("...") (base64)."""
    head = b"\n" + bytes([len(proto)]) + proto.encode()
    return base64.b64encode(head[: len(head) // 3 * 3]).decode()
