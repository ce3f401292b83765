"""`make gen`: generate code from this repository's .proto files, with the framework's codegen.

    python -m devtools.gen           # regenerate
    python -m devtools.gen --check   # exit 1 when anything generated is stale

The generation itself is myko/codegen.py (and myko/codegen_ts.py), the same code
`myko gen` runs in an application. This file only names the repository's trees:

- proto/myko/v1 -> myko/v1/ (Python, .pyi, gRPC stubs) and a copy of the .proto
  files under myko/_proto/, which the wheel ships so an application's protos can
  import "myko/v1/item.proto" (`myko gen`); TypeScript -> client-ts/src/gen/myko/v1,
  inside the `@myko/client` npm package.
- the example application (examples/targets, a `myko new`-style project) ->
  examples/targets/targets/v1/ (Python, .pyi) and gen/ts/targets/v1 (TypeScript:
  messages, and typed query/report definitions `*_myko.ts`), which imports the
  framework's messages from `@myko/client`.
- client-ts/test/proto/demo/v1 -> client-ts/test/gen/demo/v1: a small contract
  the client package's own tests use (TypeScript only).
- kafka/pom.xml -> myko/local/kafka_pom.xml: the wheel's `myko run` resolves
  Kafka from the same pom the repository's Kafka image is built from.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from myko.codegen import ProtoTree, generate_python, generate_ts, install, project_trees
from myko.errors import ConfigError
from myko.project import load_project

ROOT = Path(__file__).resolve().parent.parent
PROTOC_GEN_ES = ROOT / "node_modules" / ".bin" / "protoc-gen-es"
KAFKA_POM = ROOT / "kafka" / "pom.xml"
WHEEL_KAFKA_POM = ROOT / "myko" / "local" / "kafka_pom.xml"

FRAMEWORK = ProtoTree(
    "framework", ROOT / "proto", "myko", ROOT, grpc=True, proto_copy=ROOT / "myko" / "_proto"
)
CLIENT_TESTS = ProtoTree(
    "client-tests", ROOT / "client-ts" / "test" / "proto", "demo", ROOT, includes=(FRAMEWORK.proto_root,)
)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m devtools.gen")
    ap.add_argument("--check", action="store_true", help="fail when generated code differs from the protos")
    args = ap.parse_args()
    if not PROTOC_GEN_ES.exists():
        raise SystemExit("node_modules/.bin/protoc-gen-es missing: run `npm ci` at the repo root")
    try:
        example = load_project(ROOT / "examples" / "targets")
        # The example compiles against proto/ (the source), not the copy in
        # myko/_proto, so a framework proto change is seen in one run.
        example_trees = project_trees(example, framework_protos=FRAMEWORK.proto_root)
        with tempfile.TemporaryDirectory() as tmp:
            pairs: list[tuple[Path, Path]] = []
            for tree in [FRAMEWORK, *example_trees]:
                fresh = Path(tmp) / "py" / tree.name
                fresh.mkdir(parents=True)
                pairs += generate_python(tree, fresh)
            ts = [
                ([FRAMEWORK], ROOT / "client-ts" / "src" / "gen", True),
                (example_trees, example.ts_out, False),
                ([CLIENT_TESTS], ROOT / "client-ts" / "test" / "gen", False),
            ]
            for i, (ts_trees, dest, framework) in enumerate(ts):
                fresh_ts = Path(tmp) / "ts" / str(i)
                for tree in ts_trees:
                    generate_ts(tree, fresh_ts, plugin=PROTOC_GEN_ES, framework=framework)
                pairs.append((fresh_ts, dest))
            problems = install(pairs, check=args.check)
    except ConfigError as e:
        raise SystemExit(f"make gen: {e.message}") from None
    if args.check:
        if not filecmp.cmp(KAFKA_POM, WHEEL_KAFKA_POM, shallow=False):
            problems.append(f"differs: {WHEEL_KAFKA_POM} (a copy of {KAFKA_POM})")
    else:
        shutil.copyfile(KAFKA_POM, WHEEL_KAFKA_POM)
    if problems:
        print("generated code is stale; run `make gen`:\n  " + "\n  ".join(problems), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
