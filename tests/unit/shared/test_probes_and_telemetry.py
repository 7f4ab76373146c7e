"""The operational endpoints every service shares (/metrics, /livez) and the OTLP exporter,
without Kafka or PostgreSQL: the app's lifespan is not run here."""
from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from shared import telemetry
from shared.service import Heartbeat, ServiceSpec, create_app
from shared.settings import CommonSettings


def _app():
    return create_app(ServiceSpec(service="probe", migrations=Path(".")), CommonSettings())


async def _get(app, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as c:
        return await c.get(path, follow_redirects=False)


async def test_metrics_answers_without_a_redirect():
    telemetry.EVENTS_DEAD_LETTERED.labels("probe", "p").inc(0)
    r = await _get(_app(), "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "fenxiao_events_dead_lettered_total" in r.text


async def test_livez_is_ok_while_the_heartbeat_beats():
    app = _app()
    app.state.heartbeat.start()
    try:
        await asyncio.sleep(0)
        r = await _get(app, "/livez")
        assert r.status_code == 200 and r.json()["ok"] is True
    finally:
        await app.state.heartbeat.stop()


async def test_livez_fails_when_the_loop_has_not_turned_for_longer_than_allowed():
    app = _app()
    now = [1000.0]
    app.state.heartbeat = Heartbeat(clock=lambda: now[0])
    assert (await _get(app, "/livez")).status_code == 200
    now[0] += 31.0          # default allowed stall: 30 s
    r = await _get(app, "/livez")
    assert r.status_code == 503 and r.json() == {"ok": False, "stalled_s": 31.0}


async def test_livez_fails_when_the_heartbeat_task_has_died():
    app = _app()
    hb = app.state.heartbeat
    hb.start()
    await hb.stop()         # the task has ended: the pulse is gone
    r = await _get(app, "/livez")
    assert r.status_code == 503


async def test_a_blocked_loop_stops_the_heartbeat():
    hb = Heartbeat(interval_s=0.01)
    hb.start()
    try:
        await asyncio.sleep(0.05)
        import time
        time.sleep(0.3)     # a synchronous call holding the loop
        assert hb.stalled_for() >= 0.25
        await asyncio.sleep(0.05)
        assert hb.stalled_for() < 0.25
    finally:
        await hb.stop()


@pytest.mark.parametrize("base, expected", [
    ("http://otel-collector:4318", "http://otel-collector:4318/v1/traces"),
    ("http://otel-collector:4318/", "http://otel-collector:4318/v1/traces"),
    ("http://otel-collector:4318/v1/traces", "http://otel-collector:4318/v1/traces"),
])
def test_otlp_endpoint_is_the_collector_base_plus_the_traces_path(base, expected, monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert telemetry.traces_endpoint(base) == expected


def test_otlp_traces_endpoint_variable_wins(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://elsewhere:4318/custom")
    assert telemetry.traces_endpoint("http://otel-collector:4318") == "http://elsewhere:4318/custom"


def test_spans_reach_a_collector_over_otlp_http(monkeypatch):
    """A real HTTP listener in place of the collector: the exporter POSTs protobuf to /v1/traces."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "fenxiao-probe"}))
        provider.add_span_processor(SimpleSpanProcessor(telemetry.span_exporter(f"http://127.0.0.1:{server.server_port}")))
        with provider.get_tracer("t").start_as_current_span("apply-batch"):
            pass
        provider.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    path, ctype, body = received[0]
    assert path == "/v1/traces" and ctype == "application/x-protobuf"
    req = ExportTraceServiceRequest.FromString(body)
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert [s.name for s in spans] == ["apply-batch"]


def test_a_stop_with_a_request_still_open_still_runs_the_shutdown(monkeypatch):
    """SIGTERM while a request never finishes: the server gives up waiting after
    FENXIAO_GRACEFUL_SHUTDOWN_S and the app's lifespan shutdown runs (the broker leaves its
    group, the relay and producer stop) instead of the pod being killed in the middle."""
    import contextlib
    import socket

    import uvicorn
    from fastapi import FastAPI

    from shared.service import server_config

    monkeypatch.setenv("FENXIAO_GRACEFUL_SHUTDOWN_S", "1")
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(_):
        events.append("started")
        yield
        events.append("shutdown ran")

    app = FastAPI(lifespan=lifespan)
    arrived = asyncio.Event()

    @app.get("/slow")
    async def slow():
        arrived.set()
        await asyncio.sleep(3600)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HOST", "127.0.0.1")
    config = server_config(app, port)
    assert config.timeout_graceful_shutdown == 1
    server = uvicorn.Server(config)

    async def scenario():
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(timeout=60) as client:
            request = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/slow"))
            await arrived.wait()
            server.should_exit = True       # what SIGTERM sets
            await asyncio.wait_for(serving, timeout=30)
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)

    asyncio.run(scenario())
    assert events == ["started", "shutdown ran"]
