"""An open-loop HTTP load generator on raw asyncio (HTTP/1.1 keep-alive), cheap enough to share
two cores with the service it measures: httpx costs the client about a millisecond of CPU per
request, this about a tenth of that.

Open loop: request i is sent at t0 + i/rate whatever the previous ones are doing, and its
latency is counted from that scheduled instant (not from when it was actually written), so a
slow server or a lagging generator shows in the figures instead of silently lowering the load
(no coordinated omission)."""
from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    k = max(1, math.ceil(q / 100 * len(s)))
    return s[min(k, len(s)) - 1]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    return {"n": len(values_s), "p50_ms": round(percentile(values_s, 50) * 1000, 2),
            "p99_ms": round(percentile(values_s, 99) * 1000, 2), "max_ms": round(max(values_s, default=0) * 1000, 2)}


def request_bytes(method: str, path: str, host: str, headers: dict[str, str] | None = None, body: object | None = None) -> bytes:
    data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class HttpError(RuntimeError):
    pass


class RawHttp:
    """A pool of keep-alive connections to one host:port; `request` writes prepared bytes and
    reads one response (Content-Length or chunked). A connection the server closed while idle
    (after its keep-alive timeout, FENXIAO_HTTP_KEEPALIVE_S) is replaced and the request sent again."""

    IDLE_S = 4.0  # below any keep-alive timeout a service may be given (default 75 s)

    def __init__(self, host: str, port: int, *, max_conns: int = 64) -> None:
        self.host, self.port, self.max_conns = host, port, max_conns
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = deque()
        self.open = 0
        self._freed = asyncio.Condition()

    async def _take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        while True:
            while self.idle:
                reader, writer, since = self.idle.pop()
                if time.monotonic() - since < self.IDLE_S and not reader.at_eof():
                    return reader, writer, True
                self.open -= 1
                writer.close()
            if self.open < self.max_conns:
                self.open += 1
                try:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                    return reader, writer, False
                except Exception:
                    self.open -= 1
                    raise
            async with self._freed:
                await self._freed.wait()

    async def _give(self, reader, writer, ok: bool) -> None:
        if ok:
            self.idle.append((reader, writer, time.monotonic()))
        else:
            self.open -= 1
            writer.close()
        async with self._freed:
            self._freed.notify()

    async def request(self, data: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            reader, writer, reused = await self._take()
            ok = False
            try:
                try:
                    writer.write(data)
                    status_line = await reader.readline()
                except ConnectionError:
                    status_line = b""
                if not status_line:
                    if reused and attempt == 1:
                        continue  # closed by the server while idle: once more on a new connection
                    raise HttpError("connection closed")
                status, body, close = await self._read_rest(reader, status_line)
                ok = not close
                return status, body
            finally:
                await self._give(reader, writer, ok)
        raise HttpError("unreachable")

    @staticmethod
    async def _read_rest(reader: asyncio.StreamReader, status_line: bytes) -> tuple[int, bytes, bool]:
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = 0, False, False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            body = b""
            while True:
                size = int((await reader.readline()).strip(), 16)
                if size == 0:
                    await reader.readline()
                    break
                body += await reader.readexactly(size)
                await reader.readline()
        else:
            body = await reader.readexactly(length) if length else b""
        return status, body, close

    async def close(self) -> None:
        while self.idle:
            _, w, _ = self.idle.pop()
            w.close()
        self.open = 0


@dataclass
class OpenLoopResult:
    rate: float
    seconds: float
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    #: how late the generator itself was in sending (its own CPU starvation)
    send_lag_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def as_dict(self) -> dict:
        return {"offered_per_s": self.rate, "seconds": self.seconds, "sent": self.sent, "ok": self.ok,
                "achieved_per_s": round(self.ok / self.wall_s, 1) if self.wall_s else 0.0, "errors": self.errors,
                **summary_ms(self.latencies_s),
                "generator_lag_p99_ms": round(percentile(self.send_lag_s, 99) * 1000, 2)}


async def open_loop(client: RawHttp, make: Callable[[int], bytes], *, rate: float, seconds: float,
                    ok_status: tuple[int, ...] = (200,), check: Callable[[int, bytes], str | None] | None = None) -> OpenLoopResult:
    """Send `rate * seconds` requests on schedule; `make(i)` gives request i's bytes, `check`
    may name an error in a response with an ok status."""
    loop = asyncio.get_running_loop()
    res = OpenLoopResult(rate, seconds)
    n = int(rate * seconds)
    tasks: list[asyncio.Task] = []

    async def one(i: int, scheduled: float) -> None:
        try:
            status, body = await client.request(make(i))
        except Exception as exc:
            res.errors[type(exc).__name__] = res.errors.get(type(exc).__name__, 0) + 1
            return
        done = loop.time()
        problem = None if status in ok_status else f"http_{status}"
        if problem is None and check is not None:
            problem = check(status, body)
        if problem:
            res.errors[problem] = res.errors.get(problem, 0) + 1
            return
        res.ok += 1
        res.latencies_s.append(done - scheduled)

    wall0 = time.perf_counter()
    t0 = loop.time() + 0.01
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        res.send_lag_s.append(max(loop.time() - scheduled, 0.0))
        tasks.append(asyncio.create_task(one(i, scheduled)))
        res.sent += 1
    await asyncio.gather(*tasks)
    res.wall_s = time.perf_counter() - wall0
    return res
