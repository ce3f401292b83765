from myko.v1 import item_pb2 as _item_pb2
from myko.v1 import options_pb2 as _options_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TargetStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_STATUS_UNSPECIFIED: _ClassVar[TargetStatus]
    TARGET_STATUS_ACTIVE: _ClassVar[TargetStatus]
    TARGET_STATUS_PAUSED: _ClassVar[TargetStatus]
    TARGET_STATUS_RETIRED: _ClassVar[TargetStatus]
TARGET_STATUS_UNSPECIFIED: TargetStatus
TARGET_STATUS_ACTIVE: TargetStatus
TARGET_STATUS_PAUSED: TargetStatus
TARGET_STATUS_RETIRED: TargetStatus

class Target(_message.Message):
    __slots__ = ("item", "name", "status", "score", "hit_count", "tags", "zone_id", "tenant")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    HIT_COUNT_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    item: _item_pb2.MItem
    name: str
    status: TargetStatus
    score: float
    hit_count: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    zone_id: str
    tenant: str
    def __init__(self, item: _Optional[_Union[_item_pb2.MItem, _Mapping]] = ..., name: _Optional[str] = ..., status: _Optional[_Union[TargetStatus, str]] = ..., score: _Optional[float] = ..., hit_count: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., zone_id: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class Zone(_message.Message):
    __slots__ = ("item", "name", "description", "tenant")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    item: _item_pb2.MItem
    name: str
    description: str
    tenant: str
    def __init__(self, item: _Optional[_Union[_item_pb2.MItem, _Mapping]] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...
