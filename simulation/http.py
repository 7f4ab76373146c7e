"""A client-side guard against the keep-alive race: a request written on a pooled connection
at the instant the server closes it gets no answer (httpx raises ReadError or
RemoteProtocolError "Server disconnected without sending a response"). Such a request may
or may not have reached the handler, so it is sent once more only when repeating it cannot
count twice: a safe or idempotent method, or a request the API makes idempotent by a key."""
from __future__ import annotations

import httpx
import structlog

log = structlog.get_logger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: the connection died under the request; an HTTP status or a timeout is not retried here
CONNECTION_RESET = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError)


def is_idempotent(method: str, headers: dict[str, str] | None = None) -> bool:
    return method.upper() in IDEMPOTENT_METHODS or any(k.lower() == "idempotency-key" for k in (headers or {}))


async def request_once_more(client: httpx.AsyncClient, method: str, url: str, *, idempotent: bool | None = None,
                            **kw) -> httpx.Response:
    """`client.request`, sent a second time (on a fresh connection) after a connection reset
    when the request is idempotent; `idempotent=True` marks a POST whose body carries its own
    key (out_trade_no, out_refund_no, idempotency_key)."""
    safe = is_idempotent(method, kw.get("headers")) if idempotent is None else idempotent
    try:
        return await client.request(method, url, **kw)
    except CONNECTION_RESET as exc:
        if not safe:
            raise
        log.warning("request_retried_after_reset", method=method, url=url, error=type(exc).__name__)
        return await client.request(method, url, **kw)
