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
    __slots__ = ("types",)
    TYPES_FIELD_NUMBER: _ClassVar[int]
    types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, types: _Optional[_Iterable[str]] = ...) -> None: ...

class RepoChange(_message.Message):
    __slots__ = ("snapshot", "snapshot_complete", "events", "watermark", "traceparents")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENTS_FIELD_NUMBER: _ClassVar[int]
    snapshot: bool
    snapshot_complete: bool
    events: _containers.RepeatedCompositeFieldContainer[_item_pb2.Event]
    watermark: _item_pb2.Watermark
    traceparents: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, snapshot: _Optional[bool] = ..., snapshot_complete: _Optional[bool] = ..., events: _Optional[_Iterable[_Union[_item_pb2.Event, _Mapping]]] = ..., watermark: _Optional[_Union[_item_pb2.Watermark, _Mapping]] = ..., traceparents: _Optional[_Iterable[str]] = ...) -> None: ...

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
