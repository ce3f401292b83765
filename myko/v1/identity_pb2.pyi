from myko.v1 import item_pb2 as _item_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Revocation(_message.Message):
    __slots__ = ("item", "subject", "not_before_ms", "revoked_by")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    item: _item_pb2.MItem
    subject: str
    not_before_ms: int
    revoked_by: str
    def __init__(self, item: _Optional[_Union[_item_pb2.MItem, _Mapping]] = ..., subject: _Optional[str] = ..., not_before_ms: _Optional[int] = ..., revoked_by: _Optional[str] = ...) -> None: ...

class RevokeTokens(_message.Message):
    __slots__ = ("subject",)
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    subject: str
    def __init__(self, subject: _Optional[str] = ...) -> None: ...
