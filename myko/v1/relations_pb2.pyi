from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CascadeDelete(_message.Message):
    __slots__ = ("relation", "owner_id", "ids")
    RELATION_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    relation: str
    owner_id: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, relation: _Optional[str] = ..., owner_id: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class EnsureChild(_message.Message):
    __slots__ = ("relation", "owner_id")
    RELATION_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    relation: str
    owner_id: str
    def __init__(self, relation: _Optional[str] = ..., owner_id: _Optional[str] = ...) -> None: ...
