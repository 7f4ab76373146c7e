"""The runtime every service's composition root builds: settings -> pool (own schema,
migrated) -> idempotent producer -> outbox relay -> FastStream broker with the service's
projectors -> FastAPI app with health, metrics and one domain-error handler."""
from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Sequence

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared import db, telemetry
from shared.kafka_security import faststream_security
from shared.limits import EdgeLimits, Rate, RateLimiter
from shared.outbox import OutboxRelay, make_producer
from shared.relay_process import RelayProcess
from shared.projector import Projection, Projector, check_positions, prune_forever, subscribe
from shared.settings import CommonSettings
from shared.topics import ensure_topics, group

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """What a running service holds; handed to projection factories, routes and tasks."""

    service: str
    settings: CommonSettings
    pool: asyncpg.Pool
    #: `kick()` it after a commit that recorded events; an `OutboxRelay` on this loop, or with
    #: FENXIAO_OUTBOX_RELAY=process a `shared.relay_process.RelayProcess` (the same interface)
    relay: OutboxRelay | RelayProcess
    #: the relay's producer (None when the relay runs in its own process)
    producer: Any
    broker: Any
    projectors: list[Projector] = field(default_factory=list)
    tasks: list[asyncio.Task] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServiceSpec:
    service: str                     # also the PostgreSQL schema name
    migrations: Path
    routers: Sequence[Any] = ()
    projections: Sequence[Callable[[Runtime], Projection]] = ()
    #: long-running tasks (schedulers, pollers) started after the broker
    background: Sequence[Callable[[Runtime], Awaitable[None]]] = ()
    #: extra start-up, e.g. building WeChat clients; may put things into runtime.extras
    on_start: Sequence[Callable[[Runtime], Awaitable[None]]] = ()
    on_stop: Sequence[Callable[[Runtime], Awaitable[None]]] = ()
    #: the service's root error: one handler answers every subclass with `error_status(exc)` and
    #: `error_body(exc)`; by default the status is the class's `status` attribute (422 without one)
    error_root: type[Exception] | None = None
    error_status: Callable[[Exception], int] = lambda exc: status_of(exc)
    title: str = ""                  # OpenAPI title; default "fenxiao <service>"
    schema: str | None = None        # defaults to `service`; tests use a fresh one
    #: (path regex, bytes): body limits of routes that take more than the default 64 KiB
    body_limits: Sequence[tuple[str, int]] = ()
    #: action -> (per user, per IP) default rates, e.g. {"bind": ("10/min,5", "300/min,100")};
    #: FENXIAO_RATE_<ACTION>_USER / _IP override them ("off": none), FENXIAO_RATE_LIMITS=off|user
    rate_limits: Mapping[str, tuple[str, str]] = field(default_factory=dict)


class Heartbeat:
    """The event loop's pulse, for the liveness probe. A task stamps the monotonic clock every
    `interval_s`; when the loop is blocked (a synchronous call, a CPU-bound loop, a deadlock on
    a thread) the stamps stop. `/livez` answers 503 once the last stamp is older than the
    allowed stall, or when the task itself has ended; a loop blocked outright cannot answer at
    all, and the probe's own timeout fails it."""

    def __init__(self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.last = clock()
        self.task: asyncio.Task | None = None

    async def run(self) -> None:
        while True:
            self.last = self.clock()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self.last = self.clock()
        self.task = asyncio.create_task(self.run(), name="event-loop-heartbeat")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def stalled_for(self) -> float:
        """Seconds since the last stamp; infinite when the heartbeat task has ended."""
        if self.task is not None and self.task.done():
            return float("inf")
        return max(0.0, self.clock() - self.last)


def create_app(spec: ServiceSpec, settings: CommonSettings) -> FastAPI:
    # <SERVICE>_SCHEMA lets a separate process (an e2e test, the bench) use a fresh schema
    schema = spec.schema or os.environ.get(f"{spec.service.upper()}_SCHEMA") or spec.service

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from faststream.kafka import KafkaBroker

        heartbeat.start()
        telemetry.configure(spec.service, settings.log_level, settings.log_json, settings.otel_exporter_otlp_endpoint)
        await ensure_topics(settings.kafka_bootstrap_servers)  # before anything reads or writes them
        applied = await db.migrate(settings.database_url, schema, spec.migrations)
        log.info("migrated", schema=schema, applied=applied)
        pool = await db.create_pool(settings.database_url, schema, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
        relay: OutboxRelay | RelayProcess
        producer = None
        if settings.outbox_relay == "process":
            # publishing runs in its own process (shared.relay_process), on another core
            relay = RelayProcess(spec.service, schema, database_url=settings.database_url,
                                 kafka_bootstrap=settings.kafka_bootstrap_servers,
                                 env={"LOG_LEVEL": settings.log_level, "LOG_JSON": str(settings.log_json).lower(),
                                      "FENXIAO_OUTBOX_LINGER_MS": str(settings.outbox_linger_ms),
                                      "OTEL_EXPORTER_OTLP_ENDPOINT": settings.otel_exporter_otlp_endpoint},
                                 # the first restart's delay (doubling to 10 s while it keeps exiting)
                                 restart_min_s=float(os.environ.get("FENXIAO_OUTBOX_RELAY_RESTART_S", "0.5")))
        else:
            producer = make_producer(settings.kafka_bootstrap_servers)
            await producer.start()
            relay = OutboxRelay(pool, producer, spec.service, linger_s=settings.outbox_linger_ms / 1000)
        # a list: FastStream would take "a:9092,b:9092" for one host
        broker = KafkaBroker(settings.kafka_bootstrap_servers.split(","), log_level=logging.DEBUG,
                             security=faststream_security())  # per-batch logs are noise; TLS / SASL: shared.kafka_security
        rt = Runtime(spec.service, settings, pool, relay, producer, broker)
        app.state.rate_limiter = await make_rate_limiter(pool, spec.rate_limits)
        app.state.runtime = rt
        for hook in spec.on_start:
            await hook(rt)
        if not settings.projector_synchronous_commit and spec.projections:
            # a batch visible before it is durable can be published, lost in a crash and re-decided
            # with new bytes: the outbox hash chain then reports a break (docs/benchmarks.md, rec. 5)
            log.warning("projector_synchronous_commit_off", service=spec.service,
                        risk="after a PostgreSQL crash the outbox hash chain may report a break")
        for make in spec.projections:
            projection = make(rt)
            projector = Projector(projection, pool, service=spec.service, relay=relay,
                                  synchronous_commit=settings.projector_synchronous_commit, on_committed=MALLOC.after_batch)
            # a test or replay schema gets its own group, so it never shares partitions with the live one
            gid = group(spec.service, projection.name) + ("" if schema == spec.service else f".{schema}")
            subscribe(broker, projector, group_id=gid, max_records=settings.projector_batch_max,
                      fetch_max_wait_ms=settings.projector_fetch_max_wait_ms,
                      min_interval_ms=settings.projector_batch_min_interval_ms)
            rt.projectors.append(projector)
        # The log must be complete: topics with unlimited retention, no stored position below a log
        # start. Either refuses the start with an error naming the topic (shared.topics, shared.projector).
        await ensure_topics(settings.kafka_bootstrap_servers, [t for p in rt.projectors for t in p.projection.topics])
        await check_positions(pool, [p.projection for p in rt.projectors], settings.kafka_bootstrap_servers)
        relay.start()
        # republish what a crash left unpublished before anything new (a relay process does it
        # before it reports ready, and this waits for that)
        await relay.drain()
        if rt.projectors:
            await broker.start()
        for p in rt.projectors:
            rt.tasks.append(asyncio.create_task(p.watch(), name=f"{spec.service}-lag-{p.projection.name}"))
        rt.tasks.append(asyncio.create_task(prune_forever(pool, spec.service), name=f"{spec.service}-prune"))
        for job in spec.background:
            rt.tasks.append(asyncio.create_task(job(rt), name=f"{spec.service}-{getattr(job, '__name__', 'task')}"))
        log.info("service_started", service=spec.service, projections=[p.projection.name for p in rt.projectors])
        try:
            yield
        finally:
            for t in rt.tasks:
                t.cancel()
            await asyncio.gather(*rt.tasks, return_exceptions=True)
            if rt.projectors:
                await broker.stop()
            for hook in spec.on_stop:
                await hook(rt)
            await relay.stop()
            if producer is not None:
                await producer.stop()
            await pool.close()
            await heartbeat.stop()

    # One request span per call is kept; the per-dependency "operation" spans cost ~15 % of a read.
    app = FastAPI(title=spec.title or f"fenxiao {spec.service}", lifespan=lifespan,
                  telemetry={"operation_spans": False})
    heartbeat = app.state.heartbeat = Heartbeat()
    max_stall_s = float(os.environ.get("FENXIAO_LIVENESS_MAX_STALL_S", "30"))

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        # a route, not a mounted app: a mount answers `/metrics` with a 307 to `/metrics/`
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
    # identities are verified with these keys, and must name this service as their audience
    app.state.identity_keys = settings.identity_keys()
    app.state.identity_audience = spec.service
    app.state.trusted_proxy_hops = int(os.environ.get("FENXIAO_TRUSTED_PROXY_HOPS", "0"))
    # body limits (413, checked before reading) and NUL refusal (422) before any route runs
    app.add_middleware(EdgeLimits, body_limits=spec.body_limits)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"ok": True}

    @app.get("/livez", include_in_schema=False)
    async def livez(request: Request) -> JSONResponse:
        """Liveness: the event loop still turns (see `Heartbeat`)."""
        stalled = request.app.state.heartbeat.stalled_for()
        if stalled > max_stall_s:
            return JSONResponse({"ok": False, "stalled_s": None if stalled == float("inf") else round(stalled, 1)},
                                status_code=503)
        return JSONResponse({"ok": True, "stalled_s": round(stalled, 1)})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        rt: Runtime = request.app.state.runtime
        try:
            async with rt.pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except Exception as exc:  # pragma: no cover
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=503)
        # not ready while a partition has no position yet or is halted (an event this code cannot read),
        # or while the outbox relay is not running (its own process is down and being restarted)
        states = {p.projection.name: p.readiness() for p in rt.projectors}
        relay_ok = rt.relay.ready
        ok = relay_ok and all(s["ready"] for s in states.values())
        not_ready: dict[str, Any] = {n: {k: v for k, v in s.items() if k in ("waiting_for_position", "halted")}
                                     for n, s in states.items() if not s["ready"]}
        if not relay_ok:
            not_ready["outbox_relay"] = "down" + (" (its process is restarting)" if isinstance(rt.relay, RelayProcess) else "")
        return JSONResponse({"ok": ok, "positions": {n: s["positions"] for n, s in states.items()},
                             **({} if ok else {"not_ready": not_ready})},
                            status_code=200 if ok else 503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # malformed requests get the same {"code", "message"} shape as the domain refusals
        errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
        message = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in errors)
        log.info("request_refused", method=request.method, path=request.url.path, status=422, code="invalid_request")
        return JSONResponse(status_code=422, content={"code": "invalid_request", "message": message or "invalid request",
                                                      "errors": errors})

    if spec.error_root is not None:
        @app.exception_handler(spec.error_root)
        async def domain_error(request: Request, exc: Exception) -> JSONResponse:
            status, body = spec.error_status(exc), error_body(exc)
            log.info("request_refused", method=request.method, path=request.url.path, status=status, code=body["code"])
            return JSONResponse(status_code=status, content=body)

    for router in spec.routers:
        # what any route may answer before its own code runs (identity, role, edge limits), declared
        # so that clients generated from the OpenAPI know them; routes declare their own others
        app.include_router(router, responses=COMMON_RESPONSES)
    plain_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = plain_openapi()
            for item in spec.get("paths", {}).values():   # a change may conflict with the current state
                for method, op in item.items():
                    if method in ("post", "put", "patch", "delete"):
                        op.setdefault("responses", {}).setdefault("409", {
                            "description": "conflicts with the current state (`code` names it)", "content": _ERROR})
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_ERROR = {"application/json": {"schema": {"type": "object"}}}
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed request (a rule named by `code`, or a bad Content-Length)", "content": _ERROR},
    401: {"description": "no identity, or not valid for this service (`detail.code`: identity_missing / identity_invalid)",
          "content": _ERROR},
    403: {"description": "the identity lacks the role, or the record is not the caller's", "content": _ERROR},
    404: {"description": "no such record (another user's records are reported as absent)", "content": _ERROR},
    413: {"description": "body too large for this route", "content": _ERROR},
    422: {"description": "invalid input (bounds, types, NUL characters) or a refused rule: `code` names it",
          "content": _ERROR},
}


async def make_rate_limiter(pool, defaults: Mapping[str, tuple[str, str]]) -> RateLimiter | None:
    """The service's rate limits (shared.limits): the spec's defaults, overridden per action by
    FENXIAO_RATE_<ACTION>_USER / _IP; FENXIAO_RATE_LIMITS=off turns them all off, =user keeps only
    the per-user ones (a demo or bench whose traffic all comes from one address)."""
    mode = os.environ.get("FENXIAO_RATE_LIMITS", "on").lower()
    if mode == "off" or not defaults:
        return None
    rules = {}
    for action, (per_user, per_ip) in defaults.items():
        env = f"FENXIAO_RATE_{action.upper()}"
        rules[action] = (Rate.parse(os.environ.get(env + "_USER", per_user)),
                         None if mode == "user" else Rate.parse(os.environ.get(env + "_IP", per_ip)))
    limiter = RateLimiter(pool, rules)
    await limiter.ensure()
    return limiter


def status_of(exc: Exception) -> int:
    """The HTTP status of a refusal: its class's `status` (every service's errors carry one), else 422."""
    return getattr(exc, "status", 422)


def _with_extra(name: str, verb: str, act: Callable[[Any], Awaitable[Any]]) -> Callable[[Runtime], Awaitable[None]]:
    async def step(rt: Runtime) -> None:
        made = rt.extras.get(name)
        if made is not None:
            await act(made)

    step.__name__ = f"{verb}_{name}"
    return step


def run_extra(name: str) -> Callable[[Runtime], Awaitable[None]]:
    """A background job that runs `runtime.extras[name].run()` when start-up made one (a follower
    or sender exists only when its WeChat keys are configured), else returns at once."""
    return _with_extra(name, "run", lambda worker: worker.run())


def close_extra(name: str) -> Callable[[Runtime], Awaitable[None]]:
    """A stop hook that closes `runtime.extras[name]` (an HTTP client) when start-up made one."""
    return _with_extra(name, "close", lambda client: client.aclose())


def error_body(exc: Exception) -> dict:
    """`{"code": "<snake_case of the error class>", "message": ...}`: the rule that was broken."""
    name = type(exc).__name__.removesuffix("Error")
    code = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return {"code": getattr(exc, "code", None) or code, "message": str(exc)}


def server_config(app: FastAPI, port: int):
    """uvicorn's settings for a service. Its idle keep-alive (FENXIAO_HTTP_KEEPALIVE_S, 75 s)
    outlasts the gateway's, so the gateway closes an idle connection first and never sends a
    request on one the service is closing (uvicorn's own default, 5 s, invites that race)."""
    import os

    import uvicorn

    from shared.settings import CommonSettings

    # On SIGTERM uvicorn stops accepting and waits for open requests; a live stream (engagement's
    # SSE) would hold it until Kubernetes kills the pod, and the lifespan's shutdown (broker leaves
    # its group, relay and producer stop) would never run. FENXIAO_GRACEFUL_SHUTDOWN_S bounds the
    # wait (25 s: inside the pods' 45 s grace period after the 5 s preStop).
    return uvicorn.Config(app, host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", port)),
                          log_config=None, access_log=False, timeout_keep_alive=CommonSettings().http_keepalive_s,
                          timeout_graceful_shutdown=int(os.environ.get("FENXIAO_GRACEFUL_SHUTDOWN_S", "25")))


def tune_gc() -> None:
    """Make the cyclic garbage collector's full collections rare and smaller (process start only).

    A full collection walks every tracked object (a commission process holds a few hundred
    thousand: reference data, caches, the app) and stops the event loop meanwhile. With
    Python's default thresholds it ran every 1-2 s in a commission process under load, 0.1-0.45 s
    each (bench, load average 5-6): 8 % of its CPU and most of its latency tail. Such collections
    found almost nothing to free (0-84 objects: nearly all garbage here is freed by reference
    counting). So: what exists at start (modules, schemas, the app) is moved out of the
    collector's sight (`gc.freeze`), and a full collection waits for `FENXIAO_GC_FULL_EVERY`
    (1000) young-generation collections instead of 10. Young collections are unchanged."""
    import gc

    gc.freeze()
    g0, g1, _ = gc.get_threshold()
    gc.set_threshold(g0, g1, int(os.environ.get("FENXIAO_GC_FULL_EVERY", "1000")))


class Malloc:
    """glibc's allocator, tuned for a process whose batches allocate tens of MiB and free them
    (process start only; a no-op where the C library is not glibc).

    Freed memory stays in the process: glibc keeps it for reuse and only gives back the top of its
    heap, and its mmap threshold rises to the largest block freed so far (up to 32 MiB), so that
    Kafka fetch responses and the batch's large buffers end up in the heap, where one block still
    in use keeps everything below it. RSS is then the high-water mark of the largest batch plus
    what fragmentation pins. So: blocks from `FENXIAO_MALLOC_MMAP_THRESHOLD` bytes up (256 KiB;
    0 keeps glibc's sliding threshold) are mapped on their own and returned when freed, and
    `trim()` (`malloc_trim`) hands back the free pages inside the heap; the projector calls it
    after each batch of at least `FENXIAO_MALLOC_TRIM_EVENTS` events (500; 0: never)."""

    M_MMAP_THRESHOLD = -3

    def __init__(self) -> None:
        self.mmap_threshold = int(os.environ.get("FENXIAO_MALLOC_MMAP_THRESHOLD", str(256 * 1024)))
        self.trim_events = int(os.environ.get("FENXIAO_MALLOC_TRIM_EVENTS", "500"))
        self.trims = 0
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            self._mallopt, self._trim = libc.mallopt, libc.malloc_trim
        except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
            self._mallopt = self._trim = None

    @property
    def glibc(self) -> bool:
        return self._trim is not None

    def tune(self) -> None:
        if self._mallopt is not None and self.mmap_threshold > 0:
            self._mallopt(self.M_MMAP_THRESHOLD, self.mmap_threshold)

    def trim(self) -> None:
        if self._trim is not None:
            self._trim(0)
            self.trims += 1

    def after_batch(self, batch: Any) -> None:
        """A projector's `on_committed`: trim after a large batch (the projection's per-batch
        objects, its decisions and caused events, are freed by then)."""
        if self.trim_events and len(batch.events) >= self.trim_events:
            self.trim()


MALLOC = Malloc()


def run(app: FastAPI, port: int) -> None:
    """Serve a service; `PORT` (set by Kubernetes or the local launcher) overrides the default."""
    import uvicorn

    tune_gc()
    telemetry.observe_gc_pauses()
    MALLOC.tune()
    uvicorn.Server(server_config(app, port)).run()


def serve(create: Callable[[Any], FastAPI], settings_type: Callable[[], CommonSettings]) -> None:
    """A composition root's `__main__`: settings from the environment, the app, served on its port."""
    settings = settings_type()
    run(create(settings), settings.port)  # type: ignore[attr-defined]
