from myko.v1 import options_pb2 as _options_pb2
from targets.v1 import entities_pb2 as _entities_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union
from myko import contract as _myko_contract
import targets.v1.entities_pb2 as _myko_r0

DESCRIPTOR: _descriptor.FileDescriptor

class AllTargets(_message.Message, _myko_contract.Query[AllTargets, _myko_r0.Target]):
    __slots__ = ()
    def __init__(self) -> None: ...

class TargetsByStatus(_message.Message, _myko_contract.Query[TargetsByStatus, _myko_r0.Target]):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _entities_pb2.TargetStatus
    def __init__(self, status: _Optional[_Union[_entities_pb2.TargetStatus, str]] = ...) -> None: ...

class TargetById(_message.Message, _myko_contract.Query[TargetById, _myko_r0.Target]):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TargetsInZone(_message.Message, _myko_contract.Query[TargetsInZone, _myko_r0.Target]):
    __slots__ = ("zone_id",)
    ZONE_ID_FIELD_NUMBER: _ClassVar[int]
    zone_id: str
    def __init__(self, zone_id: _Optional[str] = ...) -> None: ...

class AllZones(_message.Message, _myko_contract.Query[AllZones, _myko_r0.Zone]):
    __slots__ = ()
    def __init__(self) -> None: ...

class TopTargets(_message.Message, _myko_contract.Query[TopTargets, _myko_r0.Target]):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class TargetsPage(_message.Message, _myko_contract.Query[TargetsPage, _myko_r0.Target]):
    __slots__ = ("status", "offset", "limit")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    status: _entities_pb2.TargetStatus
    offset: int
    limit: int
    def __init__(self, status: _Optional[_Union[_entities_pb2.TargetStatus, str]] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...
