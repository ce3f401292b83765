from google.protobuf import any_pb2 as _any_pb2
from myko.v1 import item_pb2 as _item_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommandRequest(_message.Message):
    __slots__ = ("tx", "command")
    TX_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    tx: str
    command: _any_pb2.Any
    def __init__(self, tx: _Optional[str] = ..., command: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("tx", "command_type", "events", "visible_at")
    TX_FIELD_NUMBER: _ClassVar[int]
    COMMAND_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    VISIBLE_AT_FIELD_NUMBER: _ClassVar[int]
    tx: str
    command_type: str
    events: _containers.RepeatedCompositeFieldContainer[_item_pb2.Event]
    visible_at: _item_pb2.Watermark
    def __init__(self, tx: _Optional[str] = ..., command_type: _Optional[str] = ..., events: _Optional[_Iterable[_Union[_item_pb2.Event, _Mapping]]] = ..., visible_at: _Optional[_Union[_item_pb2.Watermark, _Mapping]] = ...) -> None: ...
