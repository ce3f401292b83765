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

class CommandBatchRequest(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[CommandRequest]
    def __init__(self, commands: _Optional[_Iterable[_Union[CommandRequest, _Mapping]]] = ...) -> None: ...

class CommandBatchResult(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[CommandOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[CommandOutcome, _Mapping]]] = ...) -> None: ...

class CommandOutcome(_message.Message):
    __slots__ = ("result", "error")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    result: CommandResult
    error: CommandError
    def __init__(self, result: _Optional[_Union[CommandResult, _Mapping]] = ..., error: _Optional[_Union[CommandError, _Mapping]] = ...) -> None: ...

class CommandError(_message.Message):
    __slots__ = ("code", "message", "limit")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    limit: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., limit: _Optional[str] = ...) -> None: ...
