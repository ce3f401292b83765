"""What an application's messages declare in their proto options, for Myko to read.

A query or report names its result type in its `.proto` (options.proto):

    message AllTargets {
      option (myko.v1.query) = { result: "targets.v1.Target" };
    }

At run time `query_result(AllTargets)` finds the result class through the
descriptor pool. For the type checker, the stubs `myko gen` writes declare the
same thing as a base class (myko/typed_stubs.py):

    class AllTargets(_message.Message, Query[AllTargets, Target]): ...

so `client.watch(AllTargets())` is an `AsyncIterator[list[Target]]` and a
handler registered with `app.query(AllTargets)` must return
`Observable[Sequence[Target]]`, with no casts. The generated runtime classes do
not inherit from `Query`/`Report`; `isinstance(msg, Query)` asks the options
instead, so it agrees with the stubs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from myko.errors import ConfigError
from myko.v1 import options_pb2

Q = TypeVar("Q")
T = TypeVar("T")
V = TypeVar("V")


class _DeclaredBy(type):
    """isinstance/issubclass against Query or Report look at the message's options."""

    _extension: Any

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, Message) and _declares(type(obj), cls._extension)

    def __subclasscheck__(cls, sub: type) -> bool:
        return isinstance(sub, type) and issubclass(sub, Message) and _declares(sub, cls._extension)


class Query(Generic[Q, T], metaclass=_DeclaredBy):
    """A query message `Q` whose result is an array of `T` (static marker, see above)."""

    _extension = options_pb2.query


class Report(Generic[Q, V], metaclass=_DeclaredBy):
    """A report message `Q` whose value is a `V` (static marker, see above)."""

    _extension = options_pb2.report


def _declares(cls: type[Message], extension: Any) -> bool:
    return bool(cls.DESCRIPTOR.GetOptions().HasExtension(extension))


def query_result(cls: type[Message]) -> type[Message] | None:
    """The class of a query's result items, or None when `cls` declares no (myko.v1.query)."""
    return _result(cls, options_pb2.query, "query")


def report_result(cls: type[Message]) -> type[Message] | None:
    """The class of a report's value, or None when `cls` declares no (myko.v1.report)."""
    return _result(cls, options_pb2.report, "report")


def _result(cls: type[Message], extension: Any, kind: str) -> type[Message] | None:
    desc = cls.DESCRIPTOR
    if not _declares(cls, extension):
        return None
    name = str(desc.GetOptions().Extensions[extension].result)
    if not name:
        raise ConfigError(f"{desc.full_name}: (myko.v1.{kind}).result is empty")
    return message_class(name, f"{desc.full_name}: (myko.v1.{kind}).result")


def message_class(full_name: str, what: str) -> type[Message]:
    """The generated class of a message by full name; its module must have been imported."""
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        raise ConfigError(
            f"{what} names {full_name!r}, which is not a loaded message: check the name, "
            f"and import its .proto in the file that names it"
        ) from None
    cls: type[Message] = message_factory.GetMessageClass(desc)
    return cls


@dataclass(frozen=True)
class Reference:
    """A field of an entity declared as `(myko.v1.ref)`: it holds another entity's id."""

    entity: type[Message]  # the entity holding the field
    field: str
    target: str  # full name of the referenced entity
    cascade: bool

    @property
    def name(self) -> str:
        return f"{self.entity.DESCRIPTOR.full_name}.{self.field}"


def references(cls: type[Message]) -> list[Reference]:
    """The reference fields an entity declares, in field-number order."""
    out = []
    extension: Any = options_pb2.ref
    # The descriptor stubs union two FieldDescriptor classes (pure Python and upb).
    fields = cast("Sequence[FieldDescriptor]", cls.DESCRIPTOR.fields)
    for field in sorted(fields, key=lambda f: f.number):
        options = field.GetOptions()
        if not options.HasExtension(extension):
            continue
        ref = options.Extensions[extension]
        where = f"{cls.DESCRIPTOR.full_name}.{field.name}"
        if field.type != field.TYPE_STRING or field.is_repeated:
            raise ConfigError(f"{where}: (myko.v1.ref) needs a singular string field holding an id")
        if not ref.entity:
            raise ConfigError(f"{where}: (myko.v1.ref).entity is empty")
        out.append(Reference(cls, field.name, ref.entity, ref.on_delete == options_pb2.ON_DELETE_CASCADE))
    return out
