"""Entity types: protobuf messages whose field 1 is `myko.v1.MItem item`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Generic, TypeVar

from google.protobuf.message import Message

from myko.errors import ConfigError

E = TypeVar("E", bound=Message)

MITEM = "myko.v1.MItem"
TYPE_URL_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True)
class EntityType(Generic[E]):
    """One declared entity: its message class and the name its topic derives from."""

    cls: type[E]

    # Cached: every record read asks for them (cached_property writes the
    # instance's __dict__, so it works on a frozen dataclass).
    @cached_property
    def name(self) -> str:
        return str(self.cls.DESCRIPTOR.full_name)

    @cached_property
    def name_bytes(self) -> bytes:
        """The name as the myko-type header carries it."""
        return self.name.encode()

    @cached_property
    def type_url(self) -> str:
        return TYPE_URL_PREFIX + self.name

    def topic(self, prefix: str) -> str:
        return prefix + self.name

    def decode(self, data: bytes) -> E:
        msg = self.cls()
        msg.ParseFromString(data)
        return msg


def check_entity_message(cls: type[Message]) -> None:
    desc = cls.DESCRIPTOR
    field = desc.fields_by_number.get(1)
    if field is None or field.name != "item" or field.message_type is None:
        raise ConfigError(f"entity {desc.full_name}: field 1 must be `myko.v1.MItem item`")
    if field.message_type.full_name != MITEM:
        raise ConfigError(f"entity {desc.full_name}: field 1 must be of type {MITEM}")


class EntityRegistry:
    """The entity types of one application, by proto full name."""

    def __init__(self) -> None:
        self._types: dict[str, EntityType[Message]] = {}

    def add(self, cls: type[E]) -> EntityType[E]:
        check_entity_message(cls)
        et = EntityType(cls)
        existing = self._types.get(et.name)
        if existing is not None and existing.cls is not cls:
            raise ConfigError(f"entity {et.name} registered twice with different classes")
        self._types[et.name] = et  # type: ignore[assignment]
        return et

    def get(self, name: str) -> EntityType[Message] | None:
        return self._types.get(name)

    def of(self, cls: type[E]) -> EntityType[E]:
        et = self._types.get(str(cls.DESCRIPTOR.full_name))
        if et is None:
            raise ConfigError(f"{cls.DESCRIPTOR.full_name} is not a registered entity")
        return et  # type: ignore[return-value]

    def names(self) -> list[str]:
        return sorted(self._types)

    def __iter__(self) -> Iterator[EntityType[Message]]:
        return iter(self._types[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._types)
