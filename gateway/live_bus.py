"""myko.v1.LiveBus, served by the gateway itself on top of LiveHub."""

from __future__ import annotations

from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError

from gateway.live_hub import FeedKey, FeedKind, LiveHub, Session
from gateway.metadata import Metadata
from gateway.status import StatusError
from gen.myko.v1 import live_pb2

_M = TypeVar("_M", live_pb2.LiveOpen, live_pb2.LiveSubscribe, live_pb2.LiveUnsubscribe)
_ACK = live_pb2.LiveAck().SerializeToString()


class LiveBus:
    def __init__(self, hub: LiveHub) -> None:
        self._hub = hub

    def open(self, payload: bytes) -> Session:
        _parse(live_pb2.LiveOpen, payload)
        return self._hub.open()

    def close(self, session: Session) -> None:
        self._hub.close(session)

    def subscribe(self, payload: bytes, metadata: Metadata) -> bytes:
        req = _parse(live_pb2.LiveSubscribe, payload)
        which = req.WhichOneof("request")
        if which == "query":
            key = FeedKey(FeedKind.QUERY, req.query.SerializeToString(deterministic=True), metadata)
        elif which == "report":
            key = FeedKey(FeedKind.REPORT, req.report.SerializeToString(deterministic=True), metadata)
        else:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, "request: set either query or report")
        self._hub.subscribe(req.session_id, req.sub_id, key)
        return _ACK

    def unsubscribe(self, payload: bytes) -> bytes:
        req = _parse(live_pb2.LiveUnsubscribe, payload)
        self._hub.unsubscribe(req.session_id, req.sub_id)
        return _ACK


def _parse(cls: type[_M], payload: bytes) -> _M:
    try:
        return cls.FromString(payload)
    except DecodeError as exc:
        raise StatusError(
            grpc.StatusCode.INVALID_ARGUMENT, f"not a {cls.DESCRIPTOR.full_name}: {exc}"
        ) from None
