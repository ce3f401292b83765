from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OnDelete(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ON_DELETE_UNSPECIFIED: _ClassVar[OnDelete]
    ON_DELETE_CASCADE: _ClassVar[OnDelete]
ON_DELETE_UNSPECIFIED: OnDelete
ON_DELETE_CASCADE: OnDelete
QUERY_FIELD_NUMBER: _ClassVar[int]
query: _descriptor.FieldDescriptor
REPORT_FIELD_NUMBER: _ClassVar[int]
report: _descriptor.FieldDescriptor
REF_FIELD_NUMBER: _ClassVar[int]
ref: _descriptor.FieldDescriptor

class QueryOptions(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: str
    def __init__(self, result: _Optional[str] = ...) -> None: ...

class ReportOptions(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: str
    def __init__(self, result: _Optional[str] = ...) -> None: ...

class RefOptions(_message.Message):
    __slots__ = ("entity", "on_delete")
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    ON_DELETE_FIELD_NUMBER: _ClassVar[int]
    entity: str
    on_delete: OnDelete
    def __init__(self, entity: _Optional[str] = ..., on_delete: _Optional[_Union[OnDelete, str]] = ...) -> None: ...
