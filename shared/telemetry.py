"""structlog JSON logs carrying trace and correlation ids, OpenTelemetry tracing whose
context rides in Kafka headers, and Prometheus metrics."""
from __future__ import annotations

import logging
import re
import sys
import time
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


# -- redaction -------------------------------------------------------------------------------
#: keys whose values never reach a log line (compared lower-case, `-` as `_`, by substring)
SENSITIVE_KEYS = ("access_token", "refresh_token", "session_key", "secret", "password", "passwd", "authorization",
                  "api_key", "apiv3", "private_key", "openid", "unionid", "phone", "mobile", "real_name", "user_name",
                  "realname", "id_card", "id_number", "idcard", "x_fenxiao_identity", "signature", "cookie")
REDACTED = "[redacted]"
_PATTERNS = [
    # tokens and keys in URLs, query strings, JSON or header text
    (re.compile(r"(?i)((?:access_token|refresh_token|session_key|secret|password|openid|unionid)[\"']?\s*[=:]\s*[\"']?)"
                r"[^&\s\"',}]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(authorization[\"']?\s*[=:]\s*[\"']?)[^\"'\n]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(x-fenxiao-identity[\"']?\s*[=:]\s*[\"']?)[^\"'\s,}]+"), r"\1" + REDACTED),
    (re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)"), "[phone]"),                        # mainland mobile numbers
    (re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])"), "[id-number]"),    # resident identity numbers
]


def _sensitive(key: str) -> bool:
    k = key.lower().replace("-", "_")
    return any(s in k for s in SENSITIVE_KEYS)


def scrub_text(text: str) -> str:
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def _scrub(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and _sensitive(k) and v is not None else _scrub(v, depth + 1))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub(v, depth + 1) for v in value)
    return value


def redact(_logger: Any, _method: str, event_dict: dict) -> dict:
    """structlog processor: values of sensitive keys (access tokens, secrets, Authorization,
    openid, phone, real names, ID numbers) are replaced, and the same values are masked inside
    any text (messages, URLs, exception text)."""
    return _scrub(event_dict)


class RedactingFilter(logging.Filter):
    """The same masking for stdlib log records (libraries: uvicorn, aiokafka, httpx if enabled)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # pragma: no cover - a broken format string stays as it was
            return True
        cleaned = scrub_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure(service: str, level: str = "INFO", json_logs: bool = True, otlp_endpoint: str = "") -> None:
    """Set up logging and tracing once per process."""
    global _configured
    if _configured:
        return
    _configured = True
    logging.basicConfig(stream=sys.stdout, level=level.upper(), format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    # httpx/httpcore log every request line at INFO/DEBUG, WeChat's access_token in the URL included
    for noisy in ("aiokafka", "faststream", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            structlog.processors.format_exc_info,
            redact,  # last before rendering: nothing sensitive reaches a line (docs/security.md)
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
    """Record headers as text. They are metadata (trace context, type hints), never the event: a
    value that is not UTF-8 is read with replacement characters rather than failing the batch that
    carries it (a batch that fails is retried, and one such record would stop its partition)."""
    out: dict[str, str] = {}
    for k, v in headers or ():
        if v is not None:
            out[k] = v.decode(errors="replace") if isinstance(v, (bytes, bytearray)) else str(v)
    return out


# -- garbage-collector pauses ------------------------------------------------------------------
GC_PAUSE = Histogram("fenxiao_gc_pause_seconds", "How long each cyclic garbage collection stopped the process",
                     ["generation"], buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
#: a collection at least this long is logged (it stops the event loop: every request and batch waits)
GC_PAUSE_LOG_S = 0.05
_gc_children = [GC_PAUSE.labels(str(g)) for g in range(3)]
_gc_started = [0.0]


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    took = time.perf_counter() - _gc_started[0]
    gen = info.get("generation", 2)
    _gc_children[gen].observe(took)
    if took >= GC_PAUSE_LOG_S:
        structlog.get_logger(__name__).warning("gc_pause", generation=gen, seconds=round(took, 3),
                                               collected=info.get("collected"), uncollectable=info.get("uncollectable"))


def observe_gc_pauses() -> None:
    """Time every collection into `fenxiao_gc_pause_seconds` (and log the long ones): a full
    collection of a large heap stops the event loop for hundreds of milliseconds, and that
    shows as a latency tail nothing else explains."""
    import gc

    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
