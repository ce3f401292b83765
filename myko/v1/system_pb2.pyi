import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from myko.v1 import item_pb2 as _item_pb2
from myko.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union
from myko import contract as _myko_contract

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_STATE_UNSPECIFIED: _ClassVar[ServiceState]
    SERVICE_STATE_SERVING: _ClassVar[ServiceState]
    SERVICE_STATE_NOT_SERVING: _ClassVar[ServiceState]
    SERVICE_STATE_STOPPED: _ClassVar[ServiceState]
SERVICE_STATE_UNSPECIFIED: ServiceState
SERVICE_STATE_SERVING: ServiceState
SERVICE_STATE_NOT_SERVING: ServiceState
SERVICE_STATE_STOPPED: ServiceState

class ServiceStatus(_message.Message):
    __slots__ = ("item", "service", "state", "reported_at", "interval_ms", "started_at", "lag_records", "subscriptions", "dead_letters", "quarantined_records", "rss_bytes", "version", "leader")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAG_RECORDS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_RECORDS_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    item: _item_pb2.MItem
    service: str
    state: ServiceState
    reported_at: _timestamp_pb2.Timestamp
    interval_ms: int
    started_at: _timestamp_pb2.Timestamp
    lag_records: int
    subscriptions: int
    dead_letters: int
    quarantined_records: int
    rss_bytes: int
    version: str
    leader: bool
    def __init__(self, item: _Optional[_Union[_item_pb2.MItem, _Mapping]] = ..., service: _Optional[str] = ..., state: _Optional[_Union[ServiceState, str]] = ..., reported_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., interval_ms: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lag_records: _Optional[int] = ..., subscriptions: _Optional[int] = ..., dead_letters: _Optional[int] = ..., quarantined_records: _Optional[int] = ..., rss_bytes: _Optional[int] = ..., version: _Optional[str] = ..., leader: _Optional[bool] = ...) -> None: ...

class ServiceStatuses(_message.Message, _myko_contract.Query[ServiceStatuses, ServiceStatus]):
    __slots__ = ()
    def __init__(self) -> None: ...
