"""The counters test domain (tests/proto/mykotest/v1/counters.proto) and an App over it.

The framework's unit tests use this instead of the example application, so
they test Myko, not `targets`. The .proto is compiled when this module is
imported (protoc to a descriptor set, loaded into the default pool): no
generated code to keep in step. Message classes are typed Any, as generated
code without stubs would be.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_tools import protoc

import myko.v1.item_pb2  # noqa: F401  (registers myko/v1/item.proto, which counters.proto imports)
from myko.app import App
from myko.command_context import CommandContext

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
_FILE = "mykotest/v1/counters.proto"


def _load() -> dict[str, Any]:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_FILE)
        loaded = True
    except KeyError:
        loaded = False
    if not loaded:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "counters.pb"
            include = Path(protoc.__file__).parent / "_proto"
            args = ["protoc", f"-I{_HERE / 'proto'}", f"-I{_ROOT / 'myko' / '_proto'}", f"-I{include}"]
            if protoc.main([*args, f"--descriptor_set_out={out}", _FILE]) != 0:
                raise RuntimeError(f"protoc failed on tests/proto/{_FILE}")
            (compiled,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
        pool.Add(compiled)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"mykotest.v1.{name}"))
        for name in ("Counter", "Add", "Fill")
    }


_classes = _load()
Counter: Any = _classes["Counter"]
Add: Any = _classes["Add"]
Fill: Any = _classes["Fill"]
COUNTER = "mykotest.v1.Counter"

# Awaited by the async Add handler between its read and its write (tests interleave there).
Pause = Callable[[], Awaitable[None]]


async def _no_pause() -> None:
    await asyncio.sleep(0)


def counter_app(*, async_add: bool = False, pause: Pause = _no_pause) -> tuple[App, dict[str, int]]:
    """An App with Add (sync, or async with `pause` between read and write) and Fill.

    Returns the app and a dict counting handler runs per tx (reruns included).
    """
    app = App("counters")
    app.entity(Counter)
    runs: dict[str, int] = {}

    def read(cmd: Any, ctx: CommandContext) -> Any:
        runs[ctx.tx] = runs.get(ctx.tx, 0) + 1
        current = ctx.get(Counter, cmd.id)
        if current is None:
            current = Counter()
            current.item.id = cmd.id
        return current

    if async_add:

        async def add_async(cmd: Any, ctx: CommandContext) -> None:
            current = read(cmd, ctx)
            await pause()
            current.value += cmd.by
            ctx.set(current)

        app.command(Add)(add_async)
    else:

        def add(cmd: Any, ctx: CommandContext) -> None:
            current = read(cmd, ctx)
            current.value += cmd.by
            ctx.set(current)

        app.command(Add)(add)

    def fill(cmd: Any, ctx: CommandContext) -> None:
        runs[ctx.tx] = runs.get(ctx.tx, 0) + 1
        for i in range(cmd.count):
            c = Counter(payload=b"x" * cmd.payload_bytes)
            c.item.id = f"{cmd.prefix}-{i}"
            ctx.set(c)

    app.command(Fill)(fill)
    return app, runs
