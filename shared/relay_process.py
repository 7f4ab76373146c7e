"""The outbox relay in its own OS process (FENXIAO_OUTBOX_RELAY=process; docs/reliability.md).

A service's event loop then only projects and answers; publishing (read the unpublished rows,
chain them, send them, mark them) runs on another core. The parent holds a `RelayProcess`, which
has the interface the code uses on `runtime.relay` (`kick`, `start`, `drain`, `stop`, `ready`); the
child (`python -m shared.relay_process`, a fresh interpreter: never a fork of a process with an
event loop, threads and sockets) builds its own pool, producer and `shared.outbox.OutboxRelay`.

Two pipes join them:
- wake (parent -> child): `kick()` writes one byte, non-blocking (a byte still unread already wakes
  the child). End of file (the parent closed it, or died: even on kill -9 the kernel closes its
  descriptors) makes the child finish its cycle and exit, so no relay outlives its service.
- report (child -> parent): newline-delimited JSON. `{"ready": true, "drained": n}` once the child
  has republished what was pending at its start; `{"published": n, "parked": {topic: n}}` after
  each batch, which the parent adds to its own counters (its /metrics stays the service's).

The parent restarts a child that exits (with a backoff) and is not ready meanwhile. Only one relay
publishes a schema at a time whatever runs where (`OutboxRelay`'s advisory lock), so an old child,
a new one and another replica's relay never interleave one partition's records."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from shared.eventloop import uvloop_factory
from shared.outbox import OUTBOX_PARKED
from shared.telemetry import OUTBOX_PUBLISHED

log = structlog.get_logger(__name__)

RELAY_PROCESS_EXITS = Counter("fenxiao_outbox_relay_process_exits_total",
                              "Outbox relay processes that exited while the service ran (each is restarted)", ["service"])
RELAY_PROCESS_UP = Gauge("fenxiao_outbox_relay_process_up", "1 while the service's outbox relay process is ready", ["service"])

#: where `shared` lives: the child imports it from there whatever the parent's working directory
_ROOT = str(Path(__file__).resolve().parents[1])


class RelayProcess:
    """The parent's side: starts the relay process, wakes it, counts what it reports, restarts it
    when it exits, and stops it. `drain()` waits until the first child has republished what was
    pending at start (the start-up's "before anything new"); it raises if that child exits first,
    so a relay that cannot start fails the service's start as an inline one would."""

    def __init__(self, service: str, schema: str, *, database_url: str, kafka_bootstrap: str, env: dict[str, str] | None = None,
                 restart_min_s: float = 0.5, restart_max_s: float = 10.0, stop_timeout_s: float = 10.0) -> None:
        self.service, self.schema = service, schema
        self.database_url, self.kafka_bootstrap = database_url, kafka_bootstrap
        self.env = dict(env or {})
        self.restart_min_s, self.restart_max_s, self.stop_timeout_s = restart_min_s, restart_max_s, stop_timeout_s
        self.restarts = 0
        self.pid: int | None = None
        self._ready = False
        self._proc: asyncio.subprocess.Process | None = None
        self._wake_w: int | None = None
        self._first: asyncio.Future[int] | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False

    # -- the interface of OutboxRelay that services use ---------------------------------------
    def kick(self) -> None:
        fd = self._wake_w
        if fd is None:  # between two children: the next one drains at its start
            return
        try:
            os.write(fd, b"k")
        except BlockingIOError:  # the pipe is full of unread wake-ups: the child will wake
            pass
        except OSError:  # the child is gone (EPIPE): the supervisor restarts it
            pass

    def start(self) -> None:
        self._stopping = False
        self._first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._supervise(), name=f"outbox-relay-process-{self.service}")

    async def drain(self) -> int:
        assert self._first is not None, "start() first"
        return await asyncio.shield(self._first)

    @property
    def ready(self) -> bool:
        return self._ready and self._proc is not None and self._proc.returncode is None

    async def stop(self) -> None:
        """Close the wake pipe (the child finishes its cycle and exits), wait `stop_timeout_s`,
        then kill it."""
        self._stopping = True
        proc = self._proc
        self._close_wake()
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout_s)
            except asyncio.TimeoutError:
                log.error("outbox_relay_process_killed", pid=proc.pid, waited_s=self.stop_timeout_s)
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._set_ready(False)

    # -- supervision ------------------------------------------------------------------------
    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        RELAY_PROCESS_UP.labels(self.service).set(1 if ready else 0)

    def _close_wake(self) -> None:
        fd, self._wake_w = self._wake_w, None
        if fd is not None:
            os.close(fd)

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopping:
            began = loop.time()
            try:
                code = await self._run_child()
                why: Any = code
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # could not even start it
                code, why = None, repr(exc)
            self._set_ready(False)
            if self._stopping:
                return
            assert self._first is not None
            if not self._first.done():
                self._first.set_exception(RuntimeError(f"the outbox relay process exited ({why}) before it was ready"))
                return
            RELAY_PROCESS_EXITS.labels(self.service).inc()
            failures = 1 if loop.time() - began > 60 else failures + 1
            delay = min(self.restart_max_s, self.restart_min_s * 2 ** (failures - 1))
            log.error("outbox_relay_process_exited", exit=why, restart_in_s=delay)
            await asyncio.sleep(delay)
            self.restarts += 1

    async def _run_child(self) -> int | None:
        """One child, from its start to its exit; returns its exit status."""
        wake_r, wake_w = os.pipe()
        report_r, report_w = os.pipe()
        try:
            env = {**os.environ, **self.env, "DATABASE_URL": self.database_url, "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
                   "PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}
            # secrets (the database URL's password) travel in the environment, not in argv (ps shows argv)
            self._proc = proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shared.relay_process", "--service", self.service, "--schema", self.schema,
                "--wake-fd", str(wake_r), "--report-fd", str(report_w), pass_fds=(wake_r, report_w), env=env,
                stdin=asyncio.subprocess.DEVNULL)
        except BaseException:
            for fd in (wake_r, wake_w, report_r, report_w):
                os.close(fd)
            raise
        os.close(wake_r)
        os.close(report_w)
        os.set_blocking(wake_w, False)
        self._wake_w = wake_w
        self.pid = proc.pid
        log.info("outbox_relay_process_started", pid=proc.pid, schema=self.schema)
        reader = asyncio.StreamReader(limit=1 << 20)
        transport, _ = await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(report_r, "rb", buffering=0))
        try:
            while line := await reader.readline():  # end of file: the child is gone
                self._on_report(line)
            return await proc.wait()
        finally:
            transport.close()
            if self._proc is proc:
                self._close_wake()
            if proc.returncode is None:  # cancelled while it runs (stop() has waited or killed already)
                proc.kill()
                await proc.wait()

    def _on_report(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            log.warning("outbox_relay_process_report_unreadable", line=line[:200])
            return
        if n := msg.get("published"):
            OUTBOX_PUBLISHED.labels(self.service).inc(n)
        for topic, n in (msg.get("parked") or {}).items():
            OUTBOX_PARKED.labels(self.service, topic).inc(n)
        if msg.get("ready"):
            self._set_ready(True)
            if self._first is not None and not self._first.done():
                self._first.set_result(int(msg.get("drained", 0)))
            else:
                log.info("outbox_relay_process_ready", pid=self.pid, drained=msg.get("drained", 0))


# -- the child ---------------------------------------------------------------------------------
class _Reporter:
    """Writes report lines to the parent without ever blocking the loop: what the pipe does not
    take now is kept and written with the next line (a busy parent reads later)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self.pending = b""
        self.broken = False

    def send(self, msg: dict) -> None:
        if self.broken:
            return
        self.pending += json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        try:
            while self.pending:
                self.pending = self.pending[os.write(self.fd, self.pending):]
        except BlockingIOError:
            pass
        except OSError:  # the parent is gone: the wake pipe's end of file stops this process
            self.broken, self.pending = True, b""

    def counts(self, published: int, parked: dict[str, int]) -> None:
        self.send({"published": published, **({"parked": parked} if parked else {})})


async def _child(args: argparse.Namespace) -> int:
    from shared import db, telemetry
    from shared.outbox import OutboxRelay, make_producer
    from shared.settings import CommonSettings

    settings = CommonSettings()
    telemetry.configure(args.service, settings.log_level, settings.log_json, settings.otel_exporter_otlp_endpoint)
    structlog.contextvars.bind_contextvars(process="outbox-relay")
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    os.set_blocking(args.wake_fd, False)
    reporter = _Reporter(args.report_fd)
    relay: OutboxRelay | None = None

    def on_wake() -> None:
        try:
            data = os.read(args.wake_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the parent closed it, or died
            loop.remove_reader(args.wake_fd)
            done.set()
        elif relay is not None:
            relay.kick()

    loop.add_reader(args.wake_fd, on_wake)
    # a SIGTERM sent to this process alone stops it as the end of the wake pipe does
    loop.add_signal_handler(signal.SIGTERM, done.set)
    pool = await db.create_pool(settings.database_url, args.schema, min_size=1, max_size=2)
    producer = make_producer(settings.kafka_bootstrap_servers)
    try:
        await producer.start()
        relay = OutboxRelay(pool, producer, args.service, linger_s=settings.outbox_linger_ms / 1000)
        relay.on_counts = reporter.counts
        # republish what was left unpublished before saying ready (and before the relay's own loop
        # starts: the two would take turns at the lock, and a turn lost would end the drain early)
        drain = asyncio.create_task(relay.drain())
        stopped = asyncio.create_task(done.wait())
        await asyncio.wait((drain, stopped), return_when=asyncio.FIRST_COMPLETED)
        if drain.done():
            reporter.send({"ready": True, "drained": drain.result()})
            relay.start()
            await stopped
        else:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)
        log.info("outbox_relay_process_stopping")
        try:
            await asyncio.wait_for(relay.finish(), args.finish_timeout_s)
        except asyncio.TimeoutError:
            log.error("outbox_relay_process_finish_timed_out", waited_s=args.finish_timeout_s)
            await relay.stop()
    finally:
        await producer.stop()
        await pool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m shared.relay_process", description=__doc__.split("\n")[0])
    p.add_argument("--service", required=True)
    p.add_argument("--schema", required=True)
    p.add_argument("--wake-fd", type=int, required=True)
    p.add_argument("--report-fd", type=int, required=True)
    p.add_argument("--finish-timeout-s", type=float, default=8.0)
    args = p.parse_args(argv)
    # the parent drives the shutdown: a terminal's Ctrl-C reaches the whole process group
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # the loop its service runs on
    with asyncio.Runner(loop_factory=uvloop_factory()) as runner:
        return runner.run(_child(args))


if __name__ == "__main__":
    sys.exit(main())
