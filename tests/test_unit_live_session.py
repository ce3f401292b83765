"""The LiveBus session (myko/live_session.py): coalescing, grouped frames, the byte cap."""

from __future__ import annotations

import grpc

from myko.errors import MykoError, ResourceExhausted
from myko.live_frames import error_frame, result_prefix
from myko.live_kind import LiveKind
from myko.live_session import Session
from myko.v1 import live_pb2, query_pb2

Q = LiveKind.QUERY


def _result(n: int) -> bytes:
    return query_pb2.QueryResult(query_type=f"v{n}", seq=n).SerializeToString()


def _session(grouped: bool, failed: list[MykoError] | None = None, cap: int = 1 << 20) -> Session:
    def on_fail(s: Session) -> None:
        assert s.ended is not None and failed is not None
        failed.append(s.ended)

    return Session("t", heartbeat_s=60, max_unsent_bytes=cap, on_fail=on_fail, grouped=grouped)


async def _drain(s: Session, count: int) -> list[live_pb2.LiveFrame]:
    frames = s.frames()
    opened = live_pb2.LiveFrame.FromString((await anext(frames)).joined())
    assert opened.WhichOneof("body") == "opened"
    out = [live_pb2.LiveFrame.FromString((await anext(frames)).joined()) for _ in range(count)]
    return out


def _named(frame: live_pb2.LiveFrame) -> tuple[str, ...]:
    return (frame.sub_id, *frame.more_sub_ids)


async def test_grouped_sessions_send_one_frame_per_shared_result() -> None:
    s = _session(grouped=True)
    a, b = _result(1), _result(2)
    for sub_id, result in (("s1", a), ("s2", b), ("s3", a), ("s4", a)):
        s.deliver_result(sub_id, Q, result)
    frames = await _drain(s, 2)
    assert [_named(f) for f in frames] == [("s1", "s3", "s4"), ("s2",)]
    assert frames[0].query.seq == 1 and frames[1].query.seq == 2


async def test_ungrouped_sessions_name_one_subscription_per_frame() -> None:
    s = _session(grouped=False)
    a = _result(1)
    for sub_id in ("s1", "s2"):
        s.deliver_result(sub_id, Q, a)
    assert [_named(f) for f in await _drain(s, 2)] == [("s1",), ("s2",)]


async def test_a_newer_value_replaces_an_unsent_one_and_leaves_its_group() -> None:
    s = _session(grouped=True)
    old, new = _result(1), _result(2)
    for sub_id in ("s1", "s2", "s3"):
        s.deliver_result(sub_id, Q, old)
    s.deliver_result("s2", Q, new)
    s.deliver("s3", error_frame("s3", grpc.StatusCode.PERMISSION_DENIED, "no"))
    frames = await _drain(s, 3)
    assert [(_named(f), f.WhichOneof("body")) for f in frames] == [
        (("s1",), "query"),
        (("s2",), "query"),
        (("s3",), "error"),
    ]
    assert frames[1].query.seq == 2 and frames[2].error.code == grpc.StatusCode.PERMISSION_DENIED.value[0]


async def test_a_prefixed_frame_names_its_whole_group_and_coalesces_under_its_key() -> None:
    s = _session(grouped=True)
    prefix = result_prefix(["g1", "g2", "g3"], Q)
    s.deliver_frame("g1", prefix, _result(1))
    s.deliver_frame("g1", prefix, _result(2))
    (frame,) = await _drain(s, 1)
    assert _named(frame) == ("g1", "g2", "g3") and frame.query.seq == 2


async def test_a_session_over_its_byte_cap_ends_resource_exhausted() -> None:
    failed: list[MykoError] = []
    s = _session(grouped=False, failed=failed, cap=1000)
    s.deliver_result("s1", Q, bytes(600))
    assert not s.closed
    s.deliver_result("s2", Q, bytes(600))
    assert s.closed and isinstance(s.ended, ResourceExhausted) and failed == [s.ended]
    assert "over the limit of 1000" in s.ended.message
