"""EntityArray: a watch's ordered array of entities, carrying each one's stored encoding.

A store keeps each entity as the bytes it was written with (myko/repo.py), so
a query result over the array can be written by concatenating those bytes
(myko/query_result_encoder.py) instead of serialising every entity again.
The encodings are trusted only while the list is exactly as the watch built
it: any change to the list itself (sort, append, item assignment, ...) drops
them, and the encoder falls back to serialising each entity. Changing an
entity *inside* the array in place is not detected: handlers build new
messages instead (docs/authoring.md, "Entities you read are yours").
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, SupportsIndex, TypeVar

from google.protobuf.message import Message

E = TypeVar("E", bound=Message)


class EntityArray(list[E]):
    """A list of entities of one type plus, while unchanged, their encodings in the same order."""

    __slots__ = ("encodings", "type_url")

    def __init__(self, entities: Iterable[E], encodings: list[bytes], type_url: str) -> None:
        super().__init__(entities)
        self.encodings: list[bytes] | None = encodings if len(encodings) == len(self) else None
        self.type_url = type_url

    # Anything that reorders or replaces items makes the encodings stale.
    def _drop(self) -> None:
        self.encodings = None

    def __setitem__(self, index: Any, value: Any) -> None:
        self._drop()
        super().__setitem__(index, value)

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        self._drop()
        super().__delitem__(index)

    def __iadd__(self, other: Iterable[E]) -> EntityArray[E]:  # type: ignore[override,misc]
        self._drop()
        super().__iadd__(other)
        return self

    def __imul__(self, n: SupportsIndex) -> EntityArray[E]:
        self._drop()
        super().__imul__(n)
        return self

    def append(self, value: E) -> None:
        self._drop()
        super().append(value)

    def extend(self, values: Iterable[E]) -> None:
        self._drop()
        super().extend(values)

    def insert(self, index: SupportsIndex, value: E) -> None:
        self._drop()
        super().insert(index, value)

    def pop(self, index: SupportsIndex = -1) -> E:
        self._drop()
        return super().pop(index)

    def remove(self, value: E) -> None:
        self._drop()
        super().remove(value)

    def clear(self) -> None:
        self._drop()
        super().clear()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self._drop()
        super().sort(*args, **kwargs)

    def reverse(self) -> None:
        self._drop()
        super().reverse()
