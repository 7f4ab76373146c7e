"""Bounds on hostile input, at the edge of every service (docs/security.md, "Limits").

* `EdgeLimits`: an ASGI middleware that refuses, before any route runs,
  - a body larger than the route's limit (413): by `Content-Length` before reading anything, and
    while streaming for a body without one (never more than the limit is held);
  - a NUL character (raw, or `\\u0000` in JSON) in the path, the query string or the body (422):
    PostgreSQL refuses NUL in text, and the answer must be a 4xx, not a 500.
* Bounded types for request models: money as a strict integer within ±MAX_FEN, counts within
  ±MAX_COUNT (no 500 at 2^31 or 2^63), list lengths, string lengths.
* `RateLimiter`: per-user and per-IP token buckets in PostgreSQL (429 + Retry-After), so the
  limit holds across any number of replicas (one UPDATE ... RETURNING per check).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Awaitable, Callable, Iterable

from fastapi import HTTPException, Request
from pydantic import Field, StrictInt

#: the most money one field may carry: 10 million yuan (an order, a refund, a withdrawal)
MAX_FEN = 1_000_000_000
#: the most units / a count one field may carry
MAX_COUNT = 1_000_000
#: the most lines an order or a refund may have (an order of 200 lines is ~25 KB as an event,
#: far below Kafka's 1 MiB record limit)
MAX_LINES = 200

Fen = Annotated[StrictInt, Field(ge=-MAX_FEN, le=MAX_FEN)]
Count = Annotated[StrictInt, Field(ge=-MAX_COUNT, le=MAX_COUNT)]

#: default body limit of a route (JSON bodies are small)
DEFAULT_BODY_LIMIT = 64 * 1024
_NUL_ESCAPE = re.compile(rb"(?<!\\)\\u0000")


def _json_error(status: int, code: str, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> tuple[dict, bytes]:
    import json

    body = json.dumps({"code": code, "message": message}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         *headers]}
    return start, body


def has_nul(data: bytes) -> bool:
    """A NUL byte, or a JSON `\\u0000` escape (not itself escaped)."""
    return b"\x00" in data or (b"\\u0000" in data and _NUL_ESCAPE.search(data) is not None)


class EdgeLimits:
    """Pure ASGI middleware (no per-request task or copy beyond the body it must look at).

    `body_limits`: (path regex, bytes) checked in order; the first match wins, else the default."""

    def __init__(self, app, *, default_body_limit: int = DEFAULT_BODY_LIMIT,
                 body_limits: Iterable[tuple[str, int]] = ()) -> None:
        self.app = app
        self.default = default_body_limit
        self.limits = [(re.compile(p), n) for p, n in body_limits]

    def limit_for(self, path: str) -> int:
        for pattern, n in self.limits:
            if pattern.match(path):
                return n
        return self.default

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw_path = scope.get("raw_path") or scope.get("path", "").encode()
        if has_nul(scope.get("path", "").encode()) or b"%00" in raw_path or b"%00" in scope.get("query_string", b"") \
                or b"\x00" in scope.get("query_string", b""):
            return await self._refuse(send, 422, "invalid_request", "NUL characters are not accepted")
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        declared = None
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    return await self._refuse(send, 400, "invalid_request", "bad Content-Length")
        if declared is not None and declared > limit:
            return await self._refuse(send, 413, "body_too_large", f"the body may have at most {limit} bytes")
        # read the body (at most `limit` bytes), check it, then replay it to the app
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await self._refuse(send, 413, "body_too_large", f"the body may have at most {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if has_nul(body):
            return await self._refuse(send, 422, "invalid_request", "NUL characters are not accepted")
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send, status: int, code: str, message: str) -> None:
        start, body = _json_error(status, code, message, [(b"connection", b"close")] if status == 413 else [])
        await send(start)
        await send({"type": "http.response.body", "body": body})


# -- rate limits -----------------------------------------------------------------------------
RATE_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS rate_buckets (
    bucket   text PRIMARY KEY,
    tokens   double precision NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
)"""

# One statement per check: refill by the time elapsed (capped at the burst) and take a token if
# one is there; no row back: refused. Concurrent takes on one bucket serialise on its row.
_TAKE = """
INSERT INTO rate_buckets AS b (bucket, tokens, at) VALUES ($1, $2 - 1, clock_timestamp())
ON CONFLICT (bucket) DO UPDATE SET
    tokens = least($2, b.tokens + extract(epoch FROM clock_timestamp() - b.at)::float8 * $3) - 1,
    at = clock_timestamp()
WHERE least($2, b.tokens + extract(epoch FROM clock_timestamp() - b.at)::float8 * $3) >= 1
RETURNING tokens
"""
_LEFT = """
SELECT least($2, tokens + extract(epoch FROM clock_timestamp() - at)::float8 * $3) FROM rate_buckets WHERE bucket = $1
"""


@dataclass(frozen=True)
class Rate:
    """`burst` requests at once, refilled at `per_minute` a minute."""

    per_minute: float
    burst: int

    @classmethod
    def parse(cls, text: str) -> "Rate | None":
        """`"30/min,10"` (per minute, burst); empty or `off`: no limit."""
        text = text.strip()
        if not text or text == "off":
            return None
        rate, _, burst = text.partition(",")
        n, _, unit = rate.partition("/")
        per_minute = float(n) * {"s": 60, "sec": 60, "min": 1, "m": 1, "h": 1 / 60, "hour": 1 / 60}[unit or "min"]
        return cls(per_minute, int(burst or max(1, math.ceil(per_minute))))


class RateLimiter:
    """Token buckets in the service's own PostgreSQL schema, shared by every replica."""

    def __init__(self, pool, rules: dict[str, tuple[Rate | None, Rate | None]]) -> None:
        #: action -> (per user, per IP)
        self.pool, self.rules = pool, rules

    async def ensure(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.execute(RATE_TABLE_DDL)

    async def take(self, action: str, user: str | None, ip: str | None) -> float | None:
        """None if allowed, else the seconds to wait (Retry-After)."""
        per_user, per_ip = self.rules.get(action, (None, None))
        checks = [(f"{action}:u:{user}", per_user) for _ in (1,) if user and per_user] + \
                 [(f"{action}:ip:{ip}", per_ip) for _ in (1,) if ip and per_ip]
        if not checks:
            return None
        async with self.pool.acquire() as conn:
            for bucket, rate in checks:
                per_s = rate.per_minute / 60.0
                if await conn.fetchval(_TAKE, bucket, float(rate.burst), per_s) is None:
                    left = await conn.fetchval(_LEFT, bucket, float(rate.burst), per_s) or 0.0
                    return float(max(1, math.ceil((1 - left) / per_s)))
        return None


def client_ip(request: Request, trusted_hops: int) -> str | None:
    """The client address: with `trusted_hops` proxies in front (the gateway, an ingress), the
    address they appended to X-Forwarded-For; otherwise the peer address."""
    if trusted_hops > 0:
        xff = [p.strip() for p in request.headers.get("x-forwarded-for", "").split(",") if p.strip()]
        if len(xff) >= trusted_hops:
            return xff[-trusted_hops]
    return request.client.host if request.client else None


def rate_limited(action: str, user_of: Callable[[Request], Awaitable[Any]] | None = None):
    """A route dependency: 429 with Retry-After when `action` is over its limit for the caller
    (per user: the identity's user id; per IP: `client_ip`). The limiter is `app.state.rate_limiter`."""

    async def check(request: Request) -> None:
        limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
        if limiter is None:
            return
        from shared.identity import HEADER

        user = None
        token = request.headers.get(HEADER)
        if token:
            from shared.identity import IdentityError, verify_identity

            try:
                user = verify_identity(request.app.state.identity_keys, token,
                                       audience=request.app.state.identity_audience).user_id
            except IdentityError:
                user = None  # the route's own identity dependency answers 401/422
        ip = client_ip(request, getattr(request.app.state, "trusted_proxy_hops", 0))
        wait = await limiter.take(action, user, ip)
        if wait is not None:
            raise HTTPException(429, detail={"code": "rate_limited", "message": f"too many {action} requests"},
                                headers={"Retry-After": str(int(wait))})

    return check
