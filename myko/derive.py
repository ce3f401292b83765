"""`derive`: a value computed from a stream, typed so a lambda type-checks.

`source.pipe(ops.map(lambda ts: ...))` fails mypy --strict with an opaque
"incompatible type _T1": `ops.map` is generic and `pipe` gives the lambda no
context to infer its argument from. `derive(source, lambda ts: ...)` takes the
source first, so mypy knows what `ts` is:

    @app.report(TaskProgress)
    def progress(r: TaskProgress, repos: Store) -> Observable[TaskProgressValue]:
        return derive(repos.of(Task).watch(), lambda tasks: TaskProgressValue(open=len(tasks)))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from reactivex import Observable
from reactivex import operators as ops

T = TypeVar("T")
R = TypeVar("R")


def derive(source: Observable[T], compute: Callable[[T], R]) -> Observable[R]:
    """`compute(value)` for each value of `source` (what `source.pipe(ops.map(compute))` does)."""
    return source.pipe(ops.map(compute))
