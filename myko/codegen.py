"""Code generation from .proto files, shared by `myko gen` and this repository's `make gen`.

Each proto tree is generated into the package that ships it, so imports need no
rewriting: protoc names Python modules after the proto path, and an
application's `import "myko/v1/item.proto"` becomes `from myko.v1 import
item_pb2`, which the installed framework provides. An application's protos are
compiled against the framework's .proto files shipped in the wheel
(`myko/_proto`); only the application's own files are generated.

Python: `*_pb2.py` with `.pyi` stubs (and gRPC stubs for trees that declare
services); the stubs of queries and reports carry their declared result types
for mypy (myko/typed_stubs.py). TypeScript, when the UI has protoc-gen-es
installed (`npm install` in ui/): the messages, and a typed definition per
query and report (myko/codegen_ts.py); the framework's own messages come from
the `@myko/client` package, not generated again.

Generation always goes to a temporary directory first; `install` then replaces
the checked-in copies, or, with `check`, lists what differs (CI fails on stale
generated code).
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grpc_tools import protoc

from myko.codegen_ts import es_plugin_args, write_live_definitions
from myko.errors import CodegenError
from myko.project import Project
from myko.typed_stubs import add_result_types

HEADER = "# Generated from .proto files by `myko gen` (`make gen`); do not edit.\n"
# The framework's .proto files as installed with the wheel (copied there by `make gen`).
FRAMEWORK_PROTOS = Path(__file__).resolve().parent / "_proto"


@dataclass(frozen=True)
class ProtoTree:
    """One tree of .proto files and where its generated Python goes."""

    name: str
    proto_root: Path  # the include root: files are named relative to it
    package: str  # the top-level proto directory (== Python package) to compile
    python_out: Path  # the directory containing the package's Python folder
    grpc: bool = False  # gRPC stubs (services) too
    proto_copy: Path | None = None  # ship the .proto files here (include root)
    includes: tuple[Path, ...] = field(default=())  # other include roots its imports need

    def files(self) -> list[str]:
        base = self.proto_root / self.package
        return sorted(str(p.relative_to(self.proto_root)) for p in base.rglob("*.proto"))


def project_trees(project: Project, *, framework_protos: Path = FRAMEWORK_PROTOS) -> list[ProtoTree]:
    """An application's proto trees, compiled against the framework's protos."""
    return [
        ProtoTree(
            name=package,
            proto_root=project.proto_dir,
            package=package,
            python_out=project.root,
            includes=(framework_protos,),
        )
        for package in project.proto_packages
    ]


def run_protoc(tree: ProtoTree, args: Sequence[str]) -> None:
    well_known = Path(protoc.__file__).parent / "_proto"
    roots = [f"-I{tree.proto_root}", *(f"-I{p}" for p in tree.includes), f"-I{well_known}"]
    code = protoc.main(["protoc", *roots, *args, *tree.files()])
    if code != 0:
        raise CodegenError(f"protoc failed for the {tree.name} protos (exit {code}); see its message above")


def generate_python(tree: ProtoTree, out: Path) -> list[tuple[Path, Path]]:
    """Generate one tree under `out`; returns (generated dir, where it belongs) pairs."""
    descriptors = out / "descriptors.binpb"
    args = [
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--descriptor_set_out={descriptors}",
        "--include_imports",
    ]
    if tree.grpc:
        args.append(f"--grpc_python_out={out}")
    run_protoc(tree, args)
    # Query/report result types as base classes in the .pyi, for mypy (myko/typed_stubs.py).
    add_result_types(descriptors.read_bytes(), tree.files(), out)
    descriptors.unlink()
    generated = sorted({p.parent for p in out.rglob("*_pb2.py")})
    for d in generated:
        # The top-level package is hand-written; its generated sub-packages
        # (e.g. myko/v1, notes/v1) are not.
        (d / "__init__.py").write_text(HEADER)
    pairs = [(d, tree.python_out / d.relative_to(out)) for d in generated]
    if tree.proto_copy is not None:
        copy = out / "_proto"
        for name in tree.files():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tree.proto_root / name, copy / name)
        pairs.append((copy, tree.proto_copy))
    return pairs


def find_protoc_gen_es(*starts: Path) -> Path | None:
    """node_modules/.bin/protoc-gen-es in a start directory or above (npm workspaces hoist it)."""
    for start in starts:
        for d in (start.resolve(), *start.resolve().parents):
            plugin = d / "node_modules" / ".bin" / "protoc-gen-es"
            if plugin.exists():
                return plugin
    return None


def generate_ts(tree: ProtoTree, out: Path, *, plugin: Path, framework: bool = False) -> None:
    """Messages (protoc-gen-es) and the typed query/report definitions (myko/codegen_ts.py) into `out`.

    An application's TypeScript imports the framework's messages from the
    `@myko/client` package; only the framework's own tree (`framework`) has
    them generated.
    """
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="myko-fds-") as tmp:
        fds = Path(tmp) / f"{tree.name}.fds"
        run_protoc(tree, es_plugin_args(plugin, out, fds, framework=framework))
        write_live_definitions(fds, tree.files(), out, framework=framework)


def diff_dirs(new: Path, current: Path) -> list[str]:
    """What differs between a fresh generation and the checked-in copy."""
    if not current.exists():
        return [f"{current} is missing"]
    cmp = filecmp.dircmp(new, current, ignore=["__pycache__"])
    out = [f"only in {current}: {n}" for n in cmp.right_only]
    out += [f"missing in {current}: {n}" for n in cmp.left_only]
    out += [f"differs: {current / n}" for n in cmp.diff_files]
    for sub in cmp.common_dirs:
        out += diff_dirs(new / sub, current / sub)
    return out


def install(pairs: Sequence[tuple[Path, Path]], *, check: bool) -> list[str]:
    """Replace each destination with its fresh copy, or (check) list the differences."""
    problems: list[str] = []
    for new, current in pairs:
        if check:
            problems += diff_dirs(new, current)
        else:
            shutil.rmtree(current, ignore_errors=True)
            shutil.copytree(new, current)
    return problems


@dataclass
class GenReport:
    written: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # with check: what is stale
    notes: list[str] = field(default_factory=list)  # e.g. TypeScript skipped


def generate_project(project: Project, *, check: bool = False) -> GenReport:
    """`myko gen`: an application's Python, and its TypeScript when the UI has protoc-gen-es."""
    report = GenReport()
    trees = project_trees(project)
    if not trees:
        raise CodegenError(f"no .proto files under {project.proto_dir}/<package>/")
    with tempfile.TemporaryDirectory(prefix="myko-gen-") as tmp:
        pairs: list[tuple[Path, Path]] = []
        for tree in trees:
            fresh = Path(tmp) / "py" / tree.name
            fresh.mkdir(parents=True)
            pairs += generate_python(tree, fresh)
        if project.ui_dir.is_dir():
            plugin = find_protoc_gen_es(project.ui_dir, project.root)
            if plugin is None:
                report.notes.append(
                    f"TypeScript skipped: protoc-gen-es is not installed (run `npm install` in {project.ui_dir})"
                )
            else:
                fresh_ts = Path(tmp) / "ts"
                for tree in trees:
                    generate_ts(tree, fresh_ts, plugin=plugin)
                pairs.append((fresh_ts, project.ts_out))
        report.problems = install(pairs, check=check)
        report.written = [dest for _, dest in pairs]
    return report
