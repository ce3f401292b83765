from myko.v1 import query_pb2 as _query_pb2
from myko.v1 import report_pb2 as _report_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LiveOpen(_message.Message):
    __slots__ = ("subscriptions", "group_results")
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    GROUP_RESULTS_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[LiveSubscription]
    group_results: bool
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[LiveSubscription, _Mapping]]] = ..., group_results: _Optional[bool] = ...) -> None: ...

class LiveSubscription(_message.Message):
    __slots__ = ("sub_id", "query", "report")
    SUB_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    sub_id: str
    query: _query_pb2.QueryRequest
    report: _report_pb2.ReportRequest
    def __init__(self, sub_id: _Optional[str] = ..., query: _Optional[_Union[_query_pb2.QueryRequest, _Mapping]] = ..., report: _Optional[_Union[_report_pb2.ReportRequest, _Mapping]] = ...) -> None: ...

class LiveFrame(_message.Message):
    __slots__ = ("sub_id", "opened", "query", "report", "error", "heartbeat", "more_sub_ids")
    SUB_ID_FIELD_NUMBER: _ClassVar[int]
    OPENED_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    MORE_SUB_IDS_FIELD_NUMBER: _ClassVar[int]
    sub_id: str
    opened: LiveOpened
    query: _query_pb2.QueryResult
    report: _report_pb2.ReportResult
    error: LiveError
    heartbeat: LiveHeartbeat
    more_sub_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, sub_id: _Optional[str] = ..., opened: _Optional[_Union[LiveOpened, _Mapping]] = ..., query: _Optional[_Union[_query_pb2.QueryResult, _Mapping]] = ..., report: _Optional[_Union[_report_pb2.ReportResult, _Mapping]] = ..., error: _Optional[_Union[LiveError, _Mapping]] = ..., heartbeat: _Optional[_Union[LiveHeartbeat, _Mapping]] = ..., more_sub_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class LiveOpened(_message.Message):
    __slots__ = ("heartbeat_interval_ms",)
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    heartbeat_interval_ms: int
    def __init__(self, heartbeat_interval_ms: _Optional[int] = ...) -> None: ...

class LiveError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class LiveHeartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
