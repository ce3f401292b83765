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

from collections.abc import Callable, Iterable, Iterator
from typing import Any, SupportsIndex, TypeVar

from google.protobuf.message import Message

E = TypeVar("E", bound=Message)


class EntityArray(list[E]):
    """A list of entities of one type plus, while unchanged, their encodings in the same order.

    `EntityArray.deferred(...)` makes one whose entities are decoded only when
    something reads them (an item, an iteration, a comparison with another
    list): a result written from the encodings never decodes at all. Its
    length is known without decoding.
    """

    __slots__ = ("_decode", "encodings", "type_url")

    def __init__(self, entities: Iterable[E], encodings: list[bytes], type_url: str) -> None:
        self._decode: Callable[[list[bytes]], Iterable[E]] | None = None
        super().__init__(entities)
        self.encodings: list[bytes] | None = encodings if len(encodings) == len(self) else None
        self.type_url = type_url

    @classmethod
    def deferred(
        cls, encodings: list[bytes], type_url: str, decode: Callable[[list[bytes]], Iterable[E]]
    ) -> EntityArray[E]:
        """The entities of `encodings` (decoded by `decode` when first read)."""
        out: EntityArray[E] = cls((), [], type_url)
        out.encodings = encodings
        out._decode = decode
        return out

    def _load(self) -> None:
        decode = self._decode
        if decode is not None:
            self._decode = None
            assert self.encodings is not None
            super().extend(decode(self.encodings))

    # Reads of a deferred array decode it first.
    def __len__(self) -> int:
        if self._decode is not None and self.encodings is not None:
            return len(self.encodings)
        return super().__len__()

    def __getitem__(self, index: Any) -> Any:
        self._load()
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[E]:
        self._load()
        return super().__iter__()

    def __reversed__(self) -> Iterator[E]:
        self._load()
        return super().__reversed__()

    def __contains__(self, value: object) -> bool:
        self._load()
        return super().__contains__(value)

    def index(self, value: E, *args: Any) -> int:
        self._load()
        return super().index(value, *args)

    def count(self, value: E) -> int:
        self._load()
        return super().count(value)

    def copy(self) -> list[E]:
        self._load()
        return list(super().__iter__())

    def __repr__(self) -> str:
        self._load()
        return super().__repr__()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, list):
            return NotImplemented
        if (
            type(other) is EntityArray
            and self.encodings is not None
            and other.encodings is not None
            and self.type_url == other.type_url
        ):
            # Stored encodings are deterministic: the same bytes are the same entities,
            # different bytes a different state (what the store itself calls a change).
            return self.encodings == other.encodings
        if len(self) != len(other):
            return False
        self._load()
        if type(other) is EntityArray:
            other._load()
        return super().__eq__(other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None

    def __lt__(self, other: list[E]) -> bool:
        self._load()
        return super().__lt__(other)

    def __le__(self, other: list[E]) -> bool:
        self._load()
        return super().__le__(other)

    def __gt__(self, other: list[E]) -> bool:
        self._load()
        return super().__gt__(other)

    def __ge__(self, other: list[E]) -> bool:
        self._load()
        return super().__ge__(other)

    def __add__(self, other: list[E]) -> list[E]:  # type: ignore[override]
        self._load()
        return list(super().__iter__()) + list(other)

    def __radd__(self, other: list[E]) -> list[E]:
        self._load()
        return list(other) + list(super().__iter__())

    def __mul__(self, n: SupportsIndex) -> list[E]:
        self._load()
        return list(super().__iter__()) * n

    __rmul__ = __mul__

    def __reduce_ex__(self, protocol: SupportsIndex) -> Any:
        # Copies and pickles are plain lists: the encodings belong to the watch's array.
        return (list, (self.copy(),))

    # Anything that reorders or replaces items makes the encodings stale.
    def _drop(self) -> None:
        self._load()
        self.encodings = None

    def __setitem__(self, index: Any, value: Any) -> None:
        self._drop()
        super().__setitem__(index, value)

    def __delitem__(self, index: SupportsIndex | slice) -> None:
        self._drop()
        super().__delitem__(index)

    def __iadd__(self, other: Iterable[E]) -> EntityArray[E]:  # type: ignore[override]
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
