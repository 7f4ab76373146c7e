"""structlog JSON logs carrying trace and correlation ids, OpenTelemetry tracing whose
context rides in Kafka headers, and Prometheus metrics."""
from __future__ import annotations

import logging
import sys
from typing import Any, Mapping

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import Counter, Gauge, Histogram

EVENTS_HANDLED = Counter("fenxiao_events_handled_total", "Events applied by a projection", ["service", "projection", "event_type"])
EVENTS_DUPLICATE = Counter("fenxiao_events_duplicate_total", "Events dropped as already applied", ["service", "projection"])
EVENTS_DEAD_LETTERED = Counter("fenxiao_events_dead_lettered_total", "Records parked on a dead-letter topic", ["service", "projection"])
HANDLER_ERRORS = Counter("fenxiao_handler_errors_total", "Batches that failed and were retried", ["service", "projection"])
CONSUMER_LAG = Gauge("fenxiao_consumer_lag", "Records behind the partition end", ["service", "projection", "topic", "partition"])
BATCH_SECONDS = Histogram("fenxiao_batch_seconds", "Time to apply one batch", ["service", "projection"])
OUTBOX_PUBLISHED = Counter("fenxiao_outbox_published_total", "Outbox events published", ["service"])

_configured = False


def _add_trace_ids(_: Any, __: str, event_dict: dict) -> dict:
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def configure(service: str, level: str = "INFO", json_logs: bool = True, otlp_endpoint: str = "") -> None:
    """Set up logging and tracing once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    logging.basicConfig(stream=sys.stdout, level=level.upper(), format="%(message)s")
    for noisy in ("aiokafka", "faststream", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    provider = TracerProvider(resource=Resource.create({"service.name": f"fenxiao-{service}"}))
    if otlp_endpoint:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(span_exporter(otlp_endpoint)))
    trace.set_tracer_provider(provider)


def traces_endpoint(base: str) -> str:
    """Where spans are POSTed, read the standard way: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
    used as is; `OTEL_EXPORTER_OTLP_ENDPOINT` (our setting) is the collector's base URL, to which
    the OTLP/HTTP signal path `/v1/traces` is appended."""
    import os

    if explicit := os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return explicit
    base = base.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def span_exporter(otlp_endpoint: str) -> Any:
    """OTLP/HTTP (protobuf) exporter to the collector at `otlp_endpoint`."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=traces_endpoint(otlp_endpoint))


def tracer(name: str = "fenxiao") -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """W3C trace context of the current span, to store with an outgoing event."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    return propagate.extract(dict(headers or {}))


def kafka_headers_to_dict(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers or ():
        if v is not None:
            out[k] = v.decode() if isinstance(v, (bytes, bytearray)) else str(v)
    return out
