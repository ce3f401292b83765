from google.protobuf import any_pb2 as _any_pb2
from myko.v1 import item_pb2 as _item_pb2
from myko.v1 import system_pb2 as _system_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RepoSubscribeRequest(_message.Message):
    __slots__ = ("types", "snapshot_columns")
    TYPES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedScalarFieldContainer[str]
    snapshot_columns: bool
    def __init__(self, types: _Optional[_Iterable[str]] = ..., snapshot_columns: _Optional[bool] = ...) -> None: ...

class RepoChange(_message.Message):
    __slots__ = ("snapshot", "snapshot_complete", "events", "watermark", "traceparents", "columns")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENTS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    snapshot_complete: bool
    events: _containers.RepeatedCompositeFieldContainer[_item_pb2.Event]
    watermark: _item_pb2.Watermark
    traceparents: _containers.RepeatedScalarFieldContainer[str]
    columns: _containers.RepeatedCompositeFieldContainer[SnapshotColumns]
    def __init__(self, snapshot: _Optional[bool] = ..., snapshot_complete: _Optional[bool] = ..., events: _Optional[_Iterable[_Union[_item_pb2.Event, _Mapping]]] = ..., watermark: _Optional[_Union[_item_pb2.Watermark, _Mapping]] = ..., traceparents: _Optional[_Iterable[str]] = ..., columns: _Optional[_Iterable[_Union[SnapshotColumns, _Mapping]]] = ...) -> None: ...

class SnapshotColumns(_message.Message):
    __slots__ = ("type", "topic", "ids", "values", "partitions", "offsets")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    type: str
    topic: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    partitions: _containers.RepeatedScalarFieldContainer[int]
    offsets: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, type: _Optional[str] = ..., topic: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ..., values: _Optional[_Iterable[bytes]] = ..., partitions: _Optional[_Iterable[int]] = ..., offsets: _Optional[_Iterable[int]] = ...) -> None: ...

class RepoGetRequest(_message.Message):
    __slots__ = ("type", "ids")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    type: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RepoGetResponse(_message.Message):
    __slots__ = ("items", "watermark")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    watermark: _item_pb2.Watermark
    def __init__(self, items: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., watermark: _Optional[_Union[_item_pb2.Watermark, _Mapping]] = ...) -> None: ...

class ReportStatusRequest(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _system_pb2.ServiceStatus
    def __init__(self, status: _Optional[_Union[_system_pb2.ServiceStatus, _Mapping]] = ...) -> None: ...

class ReportStatusResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
