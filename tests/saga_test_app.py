"""A test-only application (MYKO_APP=saga_test_app): the example app plus two broken sagas.

- "always-fails" raises on every Zone event: retried, then dead-lettered;
- "emits-invalid" sends a SetTarget without a name: INVALID_ARGUMENT, dead-lettered at once.
"""

from __future__ import annotations

from google.protobuf.message import Message
from reactivex import Observable
from reactivex import operators as ops
from targets import app as example
from targets.v1 import commands_pb2, entities_pb2

from myko import App, SagaEvent, Store

FAILURE = "the failing saga failed on purpose"

app = App("targets-with-broken-sagas")
app.include(example)


@app.saga("always-fails", sources=[entities_pb2.Zone])
def always_fails(events: Observable[SagaEvent], repos: Store) -> Observable[Message]:
    def fail(event: SagaEvent) -> Message:
        raise RuntimeError(FAILURE)

    return events.pipe(ops.map(fail))


@app.saga("emits-invalid", sources=[entities_pb2.Zone])
def emits_invalid(events: Observable[SagaEvent], repos: Store) -> Observable[Message]:
    def created(event: SagaEvent) -> bool:
        return event.is_set_of(entities_pb2.Zone) and event.is_created

    def nameless(event: SagaEvent) -> Message:
        return commands_pb2.SetTarget(name="", zone_id=event.id)

    return events.pipe(ops.filter(created), ops.map(nameless))
