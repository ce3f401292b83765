"""gRPC method handlers: safe request decoding, error mapping, pre-serialised replies.

Services register plain async functions through these builders instead of the
generated servicer classes, so (a) a request that does not decode gets
INVALID_ARGUMENT instead of gRPC's INTERNAL, (b) every MykoError maps to its
status via status.py, and (c) live streams can send shared pre-serialised bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from myko.errors import InvalidArgument
from myko.metrics.rpc import MethodMetrics, RpcMetrics
from myko.status import streaming, unary

Req = TypeVar("Req", bound=Message)
Ctx = grpc.aio.ServicerContext[Any, Any]


class _Undecodable:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _decoder(cls: type[Message]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError):
            # Not the parser's own text: it says nothing a caller can act on.
            return _Undecodable(f"request is not a valid {cls.DESCRIPTOR.full_name}")

    return decode


def _checked(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument("request", request.reason)


def _encode(reply: bytes | Message) -> bytes:
    return reply if isinstance(reply, bytes) else reply.SerializeToString()


def _method_metrics(metrics: RpcMetrics | None, name: str | None) -> MethodMetrics | None:
    return metrics.method(name) if metrics is not None and name is not None else None


def unary_method(
    fn: Callable[[Req, Ctx], Awaitable[bytes | Message]],
    request_cls: type[Req],
    *,
    name: str | None = None,
    metrics: RpcMetrics | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """`name` (service/method) labels the method's log lines and, with `metrics`, its series."""
    return grpc.unary_unary_rpc_method_handler(
        unary(fn, check=_checked, name=name, metrics=_method_metrics(metrics, name)),
        request_deserializer=_decoder(request_cls),
        response_serializer=_encode,
    )


def stream_method(
    fn: Callable[[Req, Ctx], AsyncIterator[bytes | Message]],
    request_cls: type[Req],
    *,
    name: str | None = None,
    metrics: RpcMetrics | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_stream_rpc_method_handler(
        streaming(fn, check=_checked, name=name, metrics=_method_metrics(metrics, name)),
        request_deserializer=_decoder(request_cls),
        response_serializer=_encode,
    )


def register_service(
    server: grpc.aio.Server, service: str, methods: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, dict(methods)),))
