from google.protobuf import any_pb2 as _any_pb2
from myko.v1 import item_pb2 as _item_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportRequest(_message.Message):
    __slots__ = ("report", "at_least")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    AT_LEAST_FIELD_NUMBER: _ClassVar[int]
    report: _any_pb2.Any
    at_least: _item_pb2.Watermark
    def __init__(self, report: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., at_least: _Optional[_Union[_item_pb2.Watermark, _Mapping]] = ...) -> None: ...

class ReportResult(_message.Message):
    __slots__ = ("report_type", "value", "watermark", "seq")
    REPORT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    report_type: str
    value: _any_pb2.Any
    watermark: _item_pb2.Watermark
    seq: int
    def __init__(self, report_type: _Optional[str] = ..., value: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., watermark: _Optional[_Union[_item_pb2.Watermark, _Mapping]] = ..., seq: _Optional[int] = ...) -> None: ...
