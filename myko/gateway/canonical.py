"""Canonical request bytes: equal requests share one LiveBus feed however they were encoded.

Unknown fields are dropped and the message is re-serialised deterministically,
for the myko.v1 envelope always, and for the query or report payload inside its
`Any` when the payload's type is known in this process (the gateway imports
MYKO_APP for that; see GatewaySettings.app_module). An unknown payload type is
kept byte for byte: the service will answer it as it sees fit.
"""

from __future__ import annotations

from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from myko.v1 import query_pb2, report_pb2


def canonical_query(request: query_pb2.QueryRequest) -> bytes:
    return _canonical(request, request.query)


def canonical_report(request: report_pb2.ReportRequest) -> bytes:
    return _canonical(request, request.report)


def _canonical(request: query_pb2.QueryRequest | report_pb2.ReportRequest, packed: any_pb2.Any) -> bytes:
    request.DiscardUnknownFields()
    _canonical_payload(packed)
    return request.SerializeToString(deterministic=True)


def _canonical_payload(packed: any_pb2.Any) -> None:
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(packed.TypeName())
    except KeyError:
        return
    payload = message_factory.GetMessageClass(descriptor)()
    try:
        payload.ParseFromString(packed.value)
    except DecodeError:
        return
    payload.DiscardUnknownFields()
    packed.value = payload.SerializeToString(deterministic=True)
