"""The OpenTelemetry SDK behind a service's `Tracing`: resource, sampler, exporters.

Built once at the entry point from TracingSettings (the standard OTEL_*
variables) and never at import: tests build their own with an in-memory
exporter. Nothing here sets OpenTelemetry's global provider: Myko's spans come
from the provider passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from myko.settings import TracingSettings
from myko.tracing import Tracing


def sampler_of(settings: TracingSettings) -> Sampler:
    name, arg = settings.sampler, settings.sampler_arg
    base: Sampler = {
        "parentbased_always_on": DEFAULT_ON,
        "parentbased_always_off": DEFAULT_OFF,
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
    }.get(name) or (
        ParentBasedTraceIdRatio(arg) if name == "parentbased_traceidratio" else TraceIdRatioBased(arg)
    )
    return LinkedSampler(base)


class LinkedSampler(Sampler):
    """A root span linked to a sampled command is sampled too; the rest is `base`'s decision.

    Batch and emission spans have no parent, only links to the commands they
    carry: without this, a ratio sampler would keep them independently of those
    commands, and a sampled command's trace would mostly miss its emission.
    """

    def __init__(self, base: Sampler) -> None:
        self._base = base

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if not parent.is_valid and links and any(link.context.trace_flags.sampled for link in links):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self._base.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"LinkedSampler{{{self._base.get_description()}}}"


def _exporter(name: str, settings: TracingSettings) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # Imported here: only a service that exports OTLP loads the exporter's gRPC stubs.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=settings.otlp_endpoint)


def build_tracing(
    settings: TracingSettings,
    *,
    service: str,
    instance_id: str = "",
    processors: Sequence[SpanProcessor] = (),
) -> Tracing:
    """The service's Tracing: off when OTEL_SDK_DISABLED=true, else an SDK provider.

    `processors` are added to the exporters the settings name (tests pass a
    SimpleSpanProcessor over an InMemorySpanExporter).
    """
    if not settings.enabled:
        return Tracing.off()
    attributes = {"service.name": settings.service_name or service}
    if instance_id:
        attributes["service.instance.id"] = instance_id
    # Resource.create also merges OTEL_RESOURCE_ATTRIBUTES, as the SDK always does.
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler_of(settings))
    for name in settings.exporters:
        if name != "none":
            provider.add_span_processor(BatchSpanProcessor(_exporter(name, settings)))
    for processor in processors:
        provider.add_span_processor(processor)
    return Tracing(
        provider,
        shutdown=provider.shutdown,
        follows_parent=settings.sampler.startswith("parentbased_"),
    )
