"""A LiveBus Open request, checked cheapest first (the gateway and the backend services alike).

The subscription count by scanning the message's top-level field tags
(stopping one past the limit), then the full decode, then each subscription's
sub_id and request. A bad request opens nothing.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from myko.errors import InvalidArgument, ResourceExhausted, echo
from myko.live_kind import LiveKind
from myko.v1 import live_pb2

# sub_id is echoed in every frame of its subscription; the UI uses "s1", "s2", ...
MAX_SUB_ID_BYTES = 128
# Top-level fields a LiveOpen may carry besides its subscriptions (room for future ones).
_EXTRA_FIELDS = 16
_SUBSCRIPTIONS_FIELD = 1


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    result = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        byte = data[i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i + 1
        shift += 7
    return None


def check_subscription_count(payload: bytes, limit: int) -> None:
    """RESOURCE_EXHAUSTED past `limit` subscriptions, after reading at most limit + 17 field headers.

    Malformed bytes end the scan quietly: the full decode reports them.
    """
    pos = fields = subs = 0
    while pos < len(payload):
        tag = _varint(payload, pos)
        if tag is None:
            return
        key, pos = tag
        wire = key & 7
        if wire == 0:
            value = _varint(payload, pos)
            if value is None:
                return
            pos = value[1]
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length = _varint(payload, pos)
            if length is None:
                return
            pos = length[1] + length[0]
        elif wire == 5:
            pos += 4
        else:
            return
        fields += 1
        subs += (key >> 3) == _SUBSCRIPTIONS_FIELD
        if subs > limit or fields > limit + _EXTRA_FIELDS:
            raise ResourceExhausted(f"a stream may carry at most {limit} subscriptions")


def parse_live_open(payload: bytes, max_subscriptions: int) -> live_pb2.LiveOpen:
    """The LiveOpen in `payload`, every subscription with a unique non-empty sub_id and a request."""
    check_subscription_count(payload, max_subscriptions)
    try:
        req = live_pb2.LiveOpen.FromString(payload)
    except DecodeError:
        raise InvalidArgument("request", "not a myko.v1.LiveOpen") from None
    seen: set[str] = set()
    for i, sub in enumerate(req.subscriptions):
        field = f"subscriptions[{i}]"
        if not sub.sub_id:
            raise InvalidArgument(f"{field}.sub_id", "must not be empty")
        if len(sub.sub_id.encode()) > MAX_SUB_ID_BYTES:
            raise InvalidArgument(f"{field}.sub_id", f"must be at most {MAX_SUB_ID_BYTES} bytes")
        if sub.sub_id in seen:
            raise InvalidArgument(f"{field}.sub_id", f"{echo(sub.sub_id)} is repeated")
        seen.add(sub.sub_id)
        if sub.WhichOneof("request") is None:
            raise InvalidArgument(f"{field}.request", "set either query or report")
    return req


def kind_of(sub: live_pb2.LiveSubscription) -> LiveKind:
    """QUERY or REPORT; only for a subscription parse_live_open accepted."""
    return LiveKind.QUERY if sub.WhichOneof("request") == "query" else LiveKind.REPORT
