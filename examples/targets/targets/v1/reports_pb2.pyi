from myko.v1 import options_pb2 as _options_pb2
from targets.v1 import entities_pb2 as _entities_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union
from myko import contract as _myko_contract

DESCRIPTOR: _descriptor.FileDescriptor

class TargetCountsByStatus(_message.Message, _myko_contract.Report[TargetCountsByStatus, StatusCounts]):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusCount(_message.Message):
    __slots__ = ("status", "count")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    status: _entities_pb2.TargetStatus
    count: int
    def __init__(self, status: _Optional[_Union[_entities_pb2.TargetStatus, str]] = ..., count: _Optional[int] = ...) -> None: ...

class StatusCounts(_message.Message):
    __slots__ = ("counts", "total")
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedCompositeFieldContainer[StatusCount]
    total: int
    def __init__(self, counts: _Optional[_Iterable[_Union[StatusCount, _Mapping]]] = ..., total: _Optional[int] = ...) -> None: ...

class ZoneTotals(_message.Message, _myko_contract.Report[ZoneTotals, ZoneTotalsValue]):
    __slots__ = ("zone_id",)
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    zone_id: str
    def __init__(self, zone_id: _Optional[str] = ...) -> None: ...

class ZoneTotal(_message.Message):
    __slots__ = ("zone_id", "zone_name", "target_count", "score_total")
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_COUNT_FIELD_NUMBER: _ClassVar[int]
    SCORE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    zone_id: str
    zone_name: str
    target_count: int
    score_total: float
    def __init__(self, zone_id: _Optional[str] = ..., zone_name: _Optional[str] = ..., target_count: _Optional[int] = ..., score_total: _Optional[float] = ...) -> None: ...

class ZoneTotalsValue(_message.Message):
    __slots__ = ("zones",)
    ZONES_FIELD_NUMBER: _ClassVar[int]
    zones: _containers.RepeatedCompositeFieldContainer[ZoneTotal]
    def __init__(self, zones: _Optional[_Iterable[_Union[ZoneTotal, _Mapping]]] = ...) -> None: ...
