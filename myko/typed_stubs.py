"""Result types in generated stubs: what makes `client.watch(AllTargets())` a `list[Target]` to mypy.

protoc's `.pyi` output knows nothing of Myko's options. After protoc ran, this
adds to each message declaring `(myko.v1.query)` or `(myko.v1.report)` the
matching base class of myko/contract.py:

    class AllTargets(_message.Message, _myko_contract.Query[AllTargets, _myko_r0.Target]):

It reads the declarations from the FileDescriptorSet protoc wrote alongside
(`--descriptor_set_out --include_imports`), so it never imports generated code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from myko.errors import ConfigError
from myko.v1 import options_pb2

_BASE = "_message.Message"
# protoc's stubs type extensions as plain FieldDescriptors, which the
# HasExtension/Extensions stubs do not accept: hence Any.
_KINDS: tuple[tuple[str, Any], ...] = (("Query", options_pb2.query), ("Report", options_pb2.report))


def add_result_types(descriptor_set: bytes, files: Sequence[str], out: Path) -> None:
    """Rewrite the `.pyi` of each of `files` (proto paths) under `out` with result-type bases."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    where = _index(fds)
    by_name = {f.name: f for f in fds.file}
    for name in files:
        proto = by_name[name]
        declared = list(_declarations(proto))
        if not declared:
            continue
        path = out / (name.removesuffix(".proto") + "_pb2.pyi")
        path.write_text(_rewrite(path.read_text(), proto, declared, where))


# (message path inside its file, "Query" | "Report", full name of the result)
_Declaration = tuple[list[str], str, str]


def _declarations(proto: descriptor_pb2.FileDescriptorProto) -> Iterator[_Declaration]:
    def walk(msgs: Sequence[descriptor_pb2.DescriptorProto], outer: list[str]) -> Iterator[_Declaration]:
        for m in msgs:
            path = [*outer, m.name]
            for kind, extension in _KINDS:
                if m.options.HasExtension(extension):
                    yield path, kind, m.options.Extensions[extension].result
            yield from walk(m.nested_type, path)

    yield from walk(proto.message_type, [])


def _index(fds: descriptor_pb2.FileDescriptorSet) -> dict[str, tuple[str, list[str]]]:
    """Message full name -> (the file defining it, its path inside that file)."""
    out: dict[str, tuple[str, list[str]]] = {}

    def walk(
        file: str, prefix: str, msgs: Sequence[descriptor_pb2.DescriptorProto], outer: list[str]
    ) -> None:
        for m in msgs:
            path = [*outer, m.name]
            out[f"{prefix}{'.'.join(path)}"] = (file, path)
            walk(file, prefix, m.nested_type, path)

    for f in fds.file:
        walk(f.name, f"{f.package}." if f.package else "", f.message_type, [])
    return out


def _module(proto_file: str) -> str:
    return proto_file.removesuffix(".proto").replace("/", ".") + "_pb2"


def _rewrite(
    text: str,
    proto: descriptor_pb2.FileDescriptorProto,
    declared: list[_Declaration],
    where: dict[str, tuple[str, list[str]]],
) -> str:
    lines = text.splitlines()
    imports: dict[str, str] = {}  # module -> alias
    for path, kind, result in declared:
        found = where.get(result)
        if found is None:
            raise ConfigError(
                f"{proto.package}.{'.'.join(path)}: (myko.v1.{kind.lower()}).result names {result!r}, "
                f"which is not a message of {proto.name} or of a file it imports"
            )
        file, result_path = found
        if file == proto.name:
            ref = ".".join(result_path)
        else:
            alias = imports.setdefault(_module(file), f"_myko_r{len(imports)}")
            ref = f"{alias}.{'.'.join(result_path)}"
        _add_base(lines, path, f"_myko_contract.{kind}[{'.'.join(path)}, {ref}]", proto.name)
    header = ["from myko import contract as _myko_contract"]
    header += [f"import {module} as {alias}" for module, alias in imports.items()]
    # After the last import protoc wrote, before the first definition.
    last_import = max(i for i, line in enumerate(lines) if re.match(r"(from|import) ", line))
    lines[last_import + 1 : last_import + 1] = header
    return "\n".join(lines) + "\n"


def _add_base(lines: list[str], path: list[str], base: str, file: str) -> None:
    start, end = 0, len(lines)
    for depth, name in enumerate(path):
        indent = "    " * depth
        head = f"{indent}class {name}({_BASE}"
        for i in range(start, end):
            if lines[i].startswith(head):
                break
        else:
            raise ConfigError(f"{file}: no `class {'.'.join(path)}` in its generated .pyi")
        start = i + 1
        # The class body ends at the next line indented no deeper than its header.
        end = next(
            (j for j in range(start, end) if lines[j].strip() and not lines[j].startswith(indent + " ")),
            end,
        )
    i = start - 1
    lines[i] = lines[i].replace(f"({_BASE})", f"({_BASE}, {base})", 1)
