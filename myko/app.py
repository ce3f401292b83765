"""`App`: what an application declares — entities, handlers by message type, sagas, relations.

    app = App("targets")
    app.entity(Target)

    @app.command(SetTarget, allow=roles("operator"))
    def set_target(cmd: SetTarget, ctx: CommandContext) -> None: ...   # ctx.principal: who

    @app.query(TargetsByStatus)
    def by_status(q: TargetsByStatus, repos: Store) -> Observable[list[Target]]: ...

    @app.query(AllTargets, allow=roles("viewer", "operator"), scope=by_tenant)
    def all_targets(q: AllTargets, repos: Store, tenant: str) -> Observable[list[Target]]: ...

    @app.report(TargetCountsByStatus)
    def counts(r: TargetCountsByStatus, repos: Store) -> Observable[StatusCounts]: ...

    @app.saga("audit", sources=[Zone])
    def audit(events: Observable[SagaEvent], repos: Store) -> Observable[Message]: ...

    app.ensure(Target, for_each=Zone, build=perimeter, name="zone-perimeter")

`allow` is who may run the type (myko/policy.py; any authenticated caller
when not said), `scope` which rows a caller sees: a scoped query or report
handler takes the caller's scope key as a third parameter, and its
evaluations are shared only between callers with the same key.

Registration is typed: mypy --strict rejects a handler whose message type is
not the one it is registered for, or a query handler whose items are not the
query's declared result type (myko/contract.py). The same is checked at run
time, where the handler's annotations allow, and a query or report whose
message declares no result type is a ConfigError.

A larger application declares parts in several modules on `Handlers` objects
(the same decorators) and includes them: `app.include(commands.handlers, ...)`.

An App is a plain object built by the application module and handed to each
service at its entry point; there is no global registry. Every App also
declares the framework's own entity `myko.v1.ServiceStatus` and its query
`myko.v1.ServiceStatuses` (myko/service_status.py: what the UI's System page shows).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from google.protobuf.message import Message
from reactivex import Observable

from myko.command_context import CommandContext
from myko.contract import Query, Report, query_result, report_result
from myko.entities import EntityRegistry
from myko.errors import ConfigError
from myko.policy import AUTHENTICATED, Policy, Scope, roles, services
from myko.query_window import Window
from myko.relations import Ensure, Relations
from myko.repo import Store
from myko.revocation import Revocation, revoke_tokens
from myko.saga_event import SagaEvent
from myko.service_status import FRAMEWORK_QUERIES
from myko.service_status import declare as declare_service_status
from myko.v1 import identity_pb2, relations_pb2

E = TypeVar("E", bound=Message)
M = TypeVar("M", bound=Message)
Q = TypeVar("Q")
T = TypeVar("T")
P = TypeVar("P", bound=Message)
C = TypeVar("C", bound=Message)
F = TypeVar("F", bound=Callable[..., Any])

# What each kind of handler is, for the message type `M` it is registered for.
CommandHandler = Callable[[M, CommandContext], Awaitable[None] | None]
QueryHandler = Callable[[Q, Store], Observable[Sequence[T]]]
ReportHandler = Callable[[Q, Store], Observable[T]]
# Declared with a scope: the third parameter is the caller's scope key (e.g. their tenant).
ScopedQueryHandler = Callable[[Q, Store, str], Observable[Sequence[T]]]
ScopedReportHandler = Callable[[Q, Store, str], Observable[T]]
# A saga: a pipeline from events to the commands they cause, over read-only
# current state (see myko/saga_event.py for the contract).
SagaHandler = Callable[[Observable[SagaEvent], Store], Observable[Message]]

# Who may revoke tokens (myko.v1.RevokeTokens) unless the App says otherwise.
ADMIN_ROLE = "myko-admin"


@dataclass(frozen=True)
class Registration(Generic[F]):
    message: type[Message]
    handler: F
    # Who may run it; checked before the handler (PERMISSION_DENIED).
    allow: Policy = AUTHENTICATED
    # Queries and reports: which rows a caller sees; None when everyone sees the same.
    scope: Scope | None = None
    # Queries: the result is this window of the order (myko/query_window.py); None: all of it.
    window: Window | None = None

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

    def add(
        self,
        message: type[Message],
        handler: F,
        *,
        allow: Policy = AUTHENTICATED,
        scope: Scope | None = None,
        window: Window | None = None,
    ) -> None:
        reg = Registration(message, handler, allow, scope, window)
        if reg.name in self._by_name:
            raise ConfigError(f"{self.kind} {reg.name} has two handlers")
        self._by_name[reg.name] = reg

    def get(self, name: str) -> Registration[F] | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def registrations(self) -> list[Registration[F]]:
        return [self._by_name[n] for n in self.names()]

    def __len__(self) -> int:
        return len(self._by_name)


class Handlers:
    """Declarations of one part of an application, made with decorators; an App includes them."""

    def __init__(self) -> None:
        self.entities = EntityRegistry()
        # As declared; App builds what the services run from these (see App._build).
        self.declared_commands: HandlerRegistry[CommandHandler[Any]] = HandlerRegistry("command")
        self.declared_queries: HandlerRegistry[QueryHandler[Any, Any]] = HandlerRegistry("query")
        self.declared_reports: HandlerRegistry[ReportHandler[Any, Any]] = HandlerRegistry("report")
        self.declared_sagas: list[SagaRegistration] = []
        self.declared_ensures: list[Ensure[Any, Any]] = []
        # Entity full name -> field paths queries select by (see `query(index=...)`).
        self.declared_indexes: dict[str, set[str]] = {}
        # Entity full name -> key functions queries sort by (see `query(order=...)`), as declared.
        self.declared_orders: dict[str, list[Callable[[Any], Any]]] = {}

    def _changed(self) -> None:
        """Called after every declaration (App forgets what it built)."""

    def entity(self, cls: type[E]) -> type[E]:
        self.entities.add(cls)
        self._changed()
        return cls

    def command(
        self, message: type[M], *, allow: Policy = AUTHENTICATED
    ) -> Callable[[CommandHandler[M]], CommandHandler[M]]:
        def register(fn: CommandHandler[M]) -> CommandHandler[M]:
            _check_parameter(fn, message, "command")
            self.declared_commands.add(message, fn, allow=allow)
            self._changed()
            return fn

        return register

    @overload
    def query(
        self,
        message: type[Query[Q, T]],
        *,
        index: Sequence[str] = ...,
        order: Sequence[Callable[[T], Any]] = ...,
        allow: Policy = ...,
        scope: None = None,
        window: Window | None = ...,
    ) -> Callable[[QueryHandler[Q, T]], QueryHandler[Q, T]]: ...
    @overload
    def query(
        self,
        message: type[Query[Q, T]],
        *,
        index: Sequence[str] = ...,
        order: Sequence[Callable[[T], Any]] = ...,
        allow: Policy = ...,
        scope: Scope,
        window: Window | None = ...,
    ) -> Callable[[ScopedQueryHandler[Q, T]], ScopedQueryHandler[Q, T]]: ...
    def query(
        self,
        message: type[Query[Q, T]],
        *,
        index: Sequence[str] = (),
        order: Sequence[Callable[[T], Any]] = (),
        allow: Policy = AUTHENTICATED,
        scope: Scope | None = None,
        window: Window | None = None,
    ) -> Callable[[Any], Any]:
        """Register a query handler.

        `index` names the result entity's fields (dotted paths) the handler
        selects by with `watch(equal=...)`/`find()`: query and report services
        keep those indexes from their first event, so a new evaluation or Get
        costs O(matches) from the start instead of one scan to build the index.
        `order` names the key functions the handler sorts by (`watch(order_by=f)`,
        the same function objects): those services keep each entity's key in that
        order from the first event (ties by id), so a new evaluation of a large
        result walks the kept order instead of computing a key per entity and
        sorting (docs/authoring.md, "Declared orders"). `allow` says who may run it, `scope` which rows each caller sees
        (docs/security.md). `window` makes the result one bounded window of the
        handler's order (top-N or a page, docs/windows.md): the handler then
        returns a `Repo.watch(...)`, and the framework applies the window.
        """
        cls = _message_class(message)
        result = query_result(cls)
        if result is None:
            raise ConfigError(
                f"query {cls.DESCRIPTOR.full_name} declares no result type: add "
                f'`option (myko.v1.query) = {{ result: "<package>.<Entity>" }};` to its message'
            )
        entity_name = str(result.DESCRIPTOR.full_name)
        for path in index:
            _check_index_path(result, path, cls)
            self.declared_indexes.setdefault(entity_name, set()).add(path)
        for key in order:
            self._declare_order(entity_name, key, cls)
        if window is not None:
            if not isinstance(window, Window):
                raise ConfigError(f"query {cls.DESCRIPTOR.full_name}: window must be a myko.Window")
            window.check(cls)

        def register(fn: Any) -> Any:
            _check_parameter(fn, cls, "query")
            _check_result(fn, result, cls, items=True)
            _check_scope(fn, scope, cls, "query")
            self.declared_queries.add(cls, fn, allow=allow, scope=scope, window=window)
            self._changed()
            return fn

        return register

    @overload
    def report(
        self, message: type[Report[Q, T]], *, allow: Policy = ..., scope: None = None
    ) -> Callable[[ReportHandler[Q, T]], ReportHandler[Q, T]]: ...
    @overload
    def report(
        self, message: type[Report[Q, T]], *, allow: Policy = ..., scope: Scope
    ) -> Callable[[ScopedReportHandler[Q, T]], ScopedReportHandler[Q, T]]: ...
    def report(
        self, message: type[Report[Q, T]], *, allow: Policy = AUTHENTICATED, scope: Scope | None = None
    ) -> Callable[[Any], Any]:
        cls = _message_class(message)
        result = report_result(cls)
        if result is None:
            raise ConfigError(
                f"report {cls.DESCRIPTOR.full_name} declares no value type: add "
                f'`option (myko.v1.report) = {{ result: "<package>.<Message>" }};` to its message'
            )

        def register(fn: Any) -> Any:
            _check_parameter(fn, cls, "report")
            _check_result(fn, result, cls, items=False)
            _check_scope(fn, scope, cls, "report")
            self.declared_reports.add(cls, fn, allow=allow, scope=scope)
            self._changed()
            return fn

        return register

    def saga(self, name: str, *, sources: Sequence[type[Message]]) -> Callable[[SagaHandler], SagaHandler]:
        def register(fn: SagaHandler) -> SagaHandler:
            self._add_saga(SagaRegistration(name, fn, tuple(sources)))
            return fn

        return register

    def ensure(
        self, child: type[C], *, for_each: type[P], build: Callable[[P], C], name: str
    ) -> Ensure[P, C]:
        """Every `for_each` entity created gets one `child`, `build(owner)` (myko/relations.py).

        `name` is the relation's saga's name: its identity, as for any saga."""
        ensure = Ensure(name=name, child=child, owner=for_each, build=build)
        self._add_ensure(ensure)
        return ensure

    def _add_saga(self, reg: SagaRegistration) -> None:
        if reg.name in self._saga_names():
            raise ConfigError(f"saga {reg.name!r} registered twice")
        self.declared_sagas.append(reg)
        self._changed()

    def _add_ensure(self, ensure: Ensure[Any, Any]) -> None:
        if ensure.name in self._saga_names():
            raise ConfigError(f"saga {ensure.name!r} registered twice")
        self.declared_ensures.append(ensure)
        self._changed()

    def _declare_order(self, entity_name: str, key: Callable[[Any], Any], query: type[Message]) -> None:
        usable = callable(key)
        try:
            hash(key)
        except TypeError:
            usable = False  # an unhashable object cannot be found again by the store
        if not usable:
            raise ConfigError(
                f"query {query.DESCRIPTOR.full_name}: order {key!r} is not a key function (entity -> sort key)"
            )
        keys = self.declared_orders.setdefault(entity_name, [])
        if key not in keys:
            keys.append(key)

    def _saga_names(self) -> set[str]:
        return {s.name for s in self.declared_sagas} | {e.name for e in self.declared_ensures}

    def include(self, *parts: Handlers) -> None:
        """Add every declaration of `parts` (complete them first: this copies)."""
        for part in parts:
            for et in part.entities:
                self.entities.add(et.cls)
            for cmd in part.declared_commands.registrations():
                self.declared_commands.add(cmd.message, cmd.handler, allow=cmd.allow)
            for q in part.declared_queries.registrations():
                if q.name in FRAMEWORK_QUERIES and self.declared_queries.get(q.name) is not None:
                    continue  # an App included in another: both declare the framework's own
                self.declared_queries.add(q.message, q.handler, allow=q.allow, scope=q.scope, window=q.window)
            for r in part.declared_reports.registrations():
                self.declared_reports.add(r.message, r.handler, allow=r.allow, scope=r.scope)
            for saga in part.declared_sagas:
                self._add_saga(saga)
            for ensure in part.declared_ensures:
                self._add_ensure(ensure)
            for entity_name, paths in part.declared_indexes.items():
                self.declared_indexes.setdefault(entity_name, set()).update(paths)
            for entity_name, keys in part.declared_orders.items():
                for key in keys:
                    if key not in self.declared_orders.setdefault(entity_name, []):
                        self.declared_orders[entity_name].append(key)
        self._changed()


@dataclass(frozen=True)
class _Built:
    relations: Relations
    commands: HandlerRegistry[CommandHandler[Any]]
    sagas: list[SagaRegistration]


class App(Handlers):
    """A named application: its declarations, and what the services run from them.

    `commands`, `queries`, `reports` and `sagas` are what the services read:
    the declared handlers plus what relations add (their sagas, the commands
    those send, the reference check after every command handler), and the
    framework's own: the Revocation entity and RevokeTokens, allowed to `admin`
    (myko/revocation.py)."""

    def __init__(self, name: str, *, admin: Policy | None = None) -> None:
        super().__init__()
        self.name = name
        self.admin = admin or roles(ADMIN_ROLE)
        self._built: _Built | None = None
        declare_service_status(self)
        self.entity(Revocation)

    def _changed(self) -> None:
        self._built = None

    @property
    def commands(self) -> HandlerRegistry[CommandHandler[Any]]:
        return self._build().commands

    @property
    def queries(self) -> HandlerRegistry[QueryHandler[Any, Any]]:
        return self.declared_queries

    @property
    def reports(self) -> HandlerRegistry[ReportHandler[Any, Any]]:
        return self.declared_reports

    @property
    def sagas(self) -> list[SagaRegistration]:
        return self._build().sagas

    @property
    def relations(self) -> Relations:
        return self._build().relations

    def validate(self) -> None:
        """Resolve everything that spans declarations (relations); ConfigError when inconsistent."""
        self._build()

    def _build(self) -> _Built:
        if self._built is not None:
            return self._built
        relations = Relations(self.entities, self.declared_ensures)
        commands: HandlerRegistry[CommandHandler[Any]] = HandlerRegistry("command")
        for reg in self.declared_commands.registrations():
            commands.add(reg.message, _checked(reg.handler, relations), allow=reg.allow)
        # Sent by the relations' sagas only: a user could otherwise create or delete
        # children (in any tenant) by naming an owner.
        if not relations.empty:
            commands.add(
                relations_pb2.CascadeDelete, _checked(relations.cascade_delete, relations), allow=services()
            )
            commands.add(
                relations_pb2.EnsureChild, _checked(relations.ensure_child, relations), allow=services()
            )
        commands.add(identity_pb2.RevokeTokens, revoke_tokens, allow=self.admin)
        sagas = list(self.declared_sagas)
        sagas += [SagaRegistration(s.name, s.handler, s.sources) for s in relations.sagas()]
        self._built = _Built(relations, commands, sagas)
        return self._built


def _checked(fn: CommandHandler[Any], relations: Relations) -> CommandHandler[Any]:
    """The handler, then the reference check over what it wrote (reruns included)."""
    if not relations.has_references:
        return fn
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def checked_async(cmd: Message, ctx: CommandContext) -> None:
            await fn(cmd, ctx)
            relations.check_references(ctx)

        return checked_async

    @functools.wraps(fn)
    def checked(cmd: Message, ctx: CommandContext) -> Awaitable[None] | None:
        out = fn(cmd, ctx)
        if out is not None:
            return _then_check(out, ctx, relations)
        relations.check_references(ctx)
        return None

    return checked


async def _then_check(out: Awaitable[None], ctx: CommandContext, relations: Relations) -> None:
    await out
    relations.check_references(ctx)


def _check_scope(fn: Callable[..., Any], scope: Scope | None, message: type[Message], kind: str) -> None:
    """A scoped handler takes the scope key (third parameter); an unscoped one does not."""
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):
        return
    name = message.DESCRIPTOR.full_name
    if scope is not None and len(params) < 3:
        raise ConfigError(
            f"{kind} {name} declares scope={scope.name}, but its handler {_name(fn)} takes no scope "
            "parameter: add a third one (the caller's scope key) and filter by it"
        )
    if scope is None and len(params) > 2:
        raise ConfigError(
            f"{kind} {name}: handler {_name(fn)} takes {len(params)} parameters, but the {kind} declares "
            "no scope (pass scope=... to the decorator, or take two parameters)"
        )


def _message_class(message: type[Any]) -> type[Message]:
    if not (isinstance(message, type) and issubclass(message, Message)):
        raise ConfigError(f"{message!r} is not a protobuf message class")
    return message


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """The handler's resolved annotations; {} when they cannot be resolved (checked by mypy then)."""
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {}


def _check_parameter(fn: Callable[..., Any], message: type[Message], kind: str) -> None:
    hints = _hints(fn)
    try:
        params = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return
    if not params or params[0] not in hints:
        return
    declared = hints[params[0]]
    if isinstance(declared, type) and issubclass(declared, Message) and not issubclass(message, declared):
        raise ConfigError(
            f"{kind} handler {_name(fn)} takes {declared.DESCRIPTOR.full_name}, "
            f"but is registered for {message.DESCRIPTOR.full_name}"
        )


def _check_index_path(entity: type[Message], path: str, query: type[Message]) -> None:
    """A declared index is a dotted path of singular fields ending on a scalar or enum."""
    desc: Any = entity.DESCRIPTOR
    parts = path.split(".")
    for i, part in enumerate(parts):
        field = desc.fields_by_name.get(part)
        if field is None or field.is_repeated:
            raise ConfigError(
                f"query {query.DESCRIPTOR.full_name}: index {path!r} is not a singular field of "
                f"{entity.DESCRIPTOR.full_name}"
            )
        is_message = field.type == field.TYPE_MESSAGE
        if is_message == (i == len(parts) - 1):
            raise ConfigError(
                f"query {query.DESCRIPTOR.full_name}: index {path!r} must end on a scalar or enum field"
            )
        desc = field.message_type


def _check_result(
    fn: Callable[..., Any], result: type[Message], message: type[Message], *, items: bool
) -> None:
    """A query handler returns Observable[list[R]], a report handler Observable[R], R the declared type."""
    returned = _hints(fn).get("return")
    if returned is None or typing.get_origin(returned) is not Observable:
        return
    (value,) = typing.get_args(returned) or (None,)
    if items:
        if typing.get_origin(value) not in (list, Sequence):
            return
        (value,) = typing.get_args(value) or (None,)
    if isinstance(value, type) and issubclass(value, Message) and value is not result:
        what = "items" if items else "value"
        raise ConfigError(
            f"handler {_name(fn)} returns {value.DESCRIPTOR.full_name} {what}, but "
            f"{message.DESCRIPTOR.full_name} declares {result.DESCRIPTOR.full_name}"
        )


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def load_app(module: str) -> App:
    """Import the application module named by MYKO_APP and return its `app`, validated."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"MYKO_APP={module!r} cannot be imported: {exc}") from exc
    app = getattr(mod, "app", None)
    if not isinstance(app, App):
        raise ConfigError(f"MYKO_APP={module!r} has no `app` of type myko.App")
    app.validate()
    return app
