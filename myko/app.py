"""`App`: what an application declares — entities and its handlers, by message type.

    app = App("targets")
    app.entity(Target)

    @app.command(SetTarget)
    def set_target(cmd: SetTarget, ctx: CommandContext) -> None: ...

    @app.query(TargetsByStatus)
    def by_status(q: TargetsByStatus, repos: Store) -> Observable[list[Target]]: ...

    @app.saga("cascade", sources=[Zone])
    def cascade(events: Observable[SagaEvent], repos: Store) -> Observable[Message]: ...

An App is a plain object built by the application module and handed to each
service at its entry point; there is no global registry.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from reactivex import Observable

from myko.entities import EntityRegistry
from myko.errors import ConfigError
from myko.repo import Store
from myko.saga_event import SagaEvent

M = TypeVar("M", bound=Message)
F = TypeVar("F", bound=Callable[..., Any])

# Handlers are typed loosely at registration (each takes its own message type);
# the buses check message types before calling them.
CommandHandler = Callable[[Any, Any], Awaitable[None] | None]
QueryHandler = Callable[[Any, Any], Observable[Sequence[Message]]]
ReportHandler = Callable[[Any, Any], Observable[Message]]
# A saga: a pipeline from events to the commands they cause, over read-only
# current state (see myko/saga_event.py for the contract).
SagaHandler = Callable[[Observable[SagaEvent], Store], Observable[Message]]


@dataclass(frozen=True)
class Registration(Generic[F]):
    message: type[Message]
    handler: F

    @property
    def name(self) -> str:
        return str(self.message.DESCRIPTOR.full_name)


@dataclass(frozen=True)
class SagaRegistration:
    name: str
    handler: SagaHandler
    # Entity types whose events the saga reads.
    sources: tuple[type[Message], ...]


class HandlerRegistry(Generic[F]):
    """Handlers of one kind (commands, queries or reports), by message full name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._by_name: dict[str, Registration[F]] = {}

    def add(self, message: type[Message], handler: F) -> None:
        reg = Registration(message, handler)
        if reg.name in self._by_name:
            raise ConfigError(f"{self.kind} {reg.name} has two handlers")
        self._by_name[reg.name] = reg

    def get(self, name: str) -> Registration[F] | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


@dataclass
class App:
    name: str
    entities: EntityRegistry = field(default_factory=EntityRegistry)
    commands: HandlerRegistry[CommandHandler] = field(default_factory=lambda: HandlerRegistry("command"))
    queries: HandlerRegistry[QueryHandler] = field(default_factory=lambda: HandlerRegistry("query"))
    reports: HandlerRegistry[ReportHandler] = field(default_factory=lambda: HandlerRegistry("report"))
    sagas: list[SagaRegistration] = field(default_factory=list)

    def entity(self, cls: type[M]) -> type[M]:
        self.entities.add(cls)
        return cls

    def command(self, message: type[Message]) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self.commands.add(message, fn)
            return fn

        return register

    def query(self, message: type[Message]) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self.queries.add(message, fn)
            return fn

        return register

    def report(self, message: type[Message]) -> Callable[[F], F]:
        def register(fn: F) -> F:
            self.reports.add(message, fn)
            return fn

        return register

    def saga(self, name: str, *, sources: Sequence[type[Message]]) -> Callable[[F], F]:
        def register(fn: F) -> F:
            if any(s.name == name for s in self.sagas):
                raise ConfigError(f"saga {name!r} registered twice")
            self.sagas.append(SagaRegistration(name, fn, tuple(sources)))
            return fn

        return register


def load_app(module: str) -> App:
    """Import the application module named by MYKO_APP and return its `app`."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"MYKO_APP={module!r} cannot be imported: {exc}") from exc
    app = getattr(mod, "app", None)
    if not isinstance(app, App):
        raise ConfigError(f"MYKO_APP={module!r} has no `app` of type myko.App")
    return app
