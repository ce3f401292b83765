"""A gRPC status raised by the gateway's own code (bad framing, unknown method, LiveBus)."""

from __future__ import annotations

import grpc


class StatusError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def number(self) -> int:
        return int(self.code.value[0])
