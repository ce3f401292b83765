import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_OP_UNSPECIFIED: _ClassVar[EventOp]
    EVENT_OP_SET: _ClassVar[EventOp]
    EVENT_OP_DEL: _ClassVar[EventOp]
EVENT_OP_UNSPECIFIED: EventOp
EVENT_OP_SET: EventOp
EVENT_OP_DEL: EventOp

class MItem(_message.Message):
    __slots__ = ("id", "type", "created_tx", "updated_tx", "created_at", "updated_at", "version")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATED_TX_FIELD_NUMBER: _ClassVar[int]
    UPDATED_TX_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    created_tx: str
    updated_tx: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    version: int
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., created_tx: _Optional[str] = ..., updated_tx: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class Offset(_message.Message):
    __slots__ = ("topic", "partition", "offset")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    def __init__(self, topic: _Optional[str] = ..., partition: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class Watermark(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedCompositeFieldContainer[Offset]
    def __init__(self, positions: _Optional[_Iterable[_Union[Offset, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("op", "type", "id", "tx", "ts", "source", "entity", "offset", "principal")
    OP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TX_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    op: EventOp
    type: str
    id: str
    tx: str
    ts: _timestamp_pb2.Timestamp
    source: str
    entity: _any_pb2.Any
    offset: Offset
    principal: str
    def __init__(self, op: _Optional[_Union[EventOp, str]] = ..., type: _Optional[str] = ..., id: _Optional[str] = ..., tx: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., entity: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., offset: _Optional[_Union[Offset, _Mapping]] = ..., principal: _Optional[str] = ...) -> None: ...
