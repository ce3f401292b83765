"""myko.v1.LiveBus, served by the gateway itself on top of LiveHub."""

from __future__ import annotations

import grpc
from google.protobuf.message import DecodeError

from myko.gateway.live_hub import FeedKey, LiveHub, Session
from myko.gateway.metadata import Metadata
from myko.gateway.status import StatusError
from myko.live_kind import LiveKind
from myko.v1 import live_pb2


class LiveBus:
    def __init__(self, hub: LiveHub) -> None:
        self._hub = hub

    def open(self, payload: bytes, metadata: Metadata) -> Session:
        """Validates the whole request first: a bad one opens nothing."""
        try:
            req = live_pb2.LiveOpen.FromString(payload)
        except DecodeError as exc:
            raise StatusError(grpc.StatusCode.INVALID_ARGUMENT, f"not a myko.v1.LiveOpen: {exc}") from None
        subs: list[tuple[str, FeedKey]] = []
        seen: set[str] = set()
        for i, sub in enumerate(req.subscriptions):
            if not sub.sub_id:
                raise StatusError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"subscriptions[{i}].sub_id: must not be empty"
                )
            if sub.sub_id in seen:
                raise StatusError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"subscriptions[{i}].sub_id: {sub.sub_id!r} is repeated"
                )
            seen.add(sub.sub_id)
            which = sub.WhichOneof("request")
            if which == "query":
                request = sub.query.SerializeToString(deterministic=True)
                subs.append((sub.sub_id, FeedKey(LiveKind.QUERY, request, metadata)))
            elif which == "report":
                request = sub.report.SerializeToString(deterministic=True)
                subs.append((sub.sub_id, FeedKey(LiveKind.REPORT, request, metadata)))
            else:
                raise StatusError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"subscriptions[{i}].request: set either query or report",
                )
        return self._hub.open(subs)

    def close(self, session: Session) -> None:
        self._hub.close(session)
