from google.protobuf import any_pb2 as _any_pb2
from myko.v1 import item_pb2 as _item_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueryRequest(_message.Message):
    __slots__ = ("query", "at_least")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    query: _any_pb2.Any
    at_least: _item_pb2.Watermark
    def __init__(self, query: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., at_least: _Optional[_Union[_item_pb2.Watermark, _Mapping]] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("query_type", "items", "watermark", "seq", "window")
    QUERY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    query_type: str
    items: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    watermark: _item_pb2.Watermark
    seq: int
    window: ResultWindow
    def __init__(self, query_type: _Optional[str] = ..., items: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., watermark: _Optional[_Union[_item_pb2.Watermark, _Mapping]] = ..., seq: _Optional[int] = ..., window: _Optional[_Union[ResultWindow, _Mapping]] = ...) -> None: ...

class ResultWindow(_message.Message):
    __slots__ = ("offset", "total", "counted")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    offset: int
    total: int
    counted: bool
    def __init__(self, offset: _Optional[int] = ..., total: _Optional[int] = ..., counted: _Optional[bool] = ...) -> None: ...
