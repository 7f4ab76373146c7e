"""`POST /v1/wechatpay/notify`: WeChat Pay APIv3 payment and refund notices, on one URL
(routed by `event_type`). Verified (signature by `Wechatpay-Serial`, 5-minute timestamp),
decrypted, checked against the stored order, applied exactly once, archived. No network
call happens here: the answer depends on PostgreSQL only, and the events leave via the outbox.

Success: 204 without a body. Refusal: 4xx with `{"code": "FAIL", "message": "<reason_code>: ..."}`
(what WeChat expects; it retries on any non-2xx)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import asyncpg
import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.orders import commands
from services.orders.api.deps import ClockDep, RuntimeDep, SettingsDep
from services.orders.clock import Clock
from services.orders.domain.errors import NoticeRejectedError
from services.orders.domain.rules import Merchant
from services.orders.settings import OrdersSettings
from services.orders.store import orders as store
from shared.wechatpay import NotifyError, NotifyVerifier

log = structlog.get_logger(__name__)
router = APIRouter(tags=["wechatpay"])

NOTIFY_PATH = "/v1/wechatpay/notify"
MAX_BODY = 64 * 1024  # a real notice is ~1 KiB
#: what of a delivery's headers the archive keeps (no cookies or proxies' additions)
ARCHIVED_HEADERS = ("wechatpay-serial", "wechatpay-signature", "wechatpay-timestamp", "wechatpay-nonce",
                    "wechatpay-signature-type", "request-id", "user-agent", "content-type")


@dataclass(frozen=True)
class Answer:
    status: int
    outcome: str
    reason_code: str | None = None
    reason: str | None = None

    def response(self) -> Response:
        if self.status < 300:
            return Response(status_code=self.status)
        return JSONResponse({"code": "FAIL", "message": f"{self.reason_code}: {self.reason}"}, status_code=self.status)


def _unverified_field(body: bytes, name: str) -> str | None:
    """A field of a notice we could not verify, for the archive only (never trusted)."""
    try:
        value = json.loads(body).get(name)
        return value[:128] if isinstance(value, str) else None
    except Exception:
        return None


async def handle_notice(pool: asyncpg.Pool, verifier: NotifyVerifier, merchant: Merchant, settings: OrdersSettings,
                        clock: Clock, headers: Mapping[str, str], body: bytes) -> Answer:
    """Verify, apply and archive one delivery; returns what to answer WeChat."""
    kept = {k: v[:512] for k, v in ((k.lower(), v) for k, v in headers.items()) if k in ARCHIVED_HEADERS}
    archive: dict[str, Any] = dict(headers=kept, body_sha256=hashlib.sha256(body).hexdigest(), body_size=len(body),
                                   notice_id=_unverified_field(body, "id"),
                                   event_type=_unverified_field(body, "event_type"),
                                   out_trade_no=None, out_refund_no=None)

    async def refuse(status: int, code: str, message: str) -> Answer:
        async with pool.acquire() as conn:
            await store.archive_notice(conn, **archive, outcome="rejected", http_status=status, reason_code=code,
                                       reason=message[:500])
        log.warning("wechatpay_notice_rejected", notice_id=archive["notice_id"], reason_code=code, reason=message,
                    out_trade_no=archive["out_trade_no"], out_refund_no=archive["out_refund_no"])
        return Answer(status, "rejected", code, message)

    if len(body) > MAX_BODY:
        return await refuse(413, "too_large", f"notice body of {len(body)} bytes")
    try:
        notice, resource = verifier.verify_and_decrypt(headers, body)
    except NotifyError as exc:
        return await refuse(exc.status, exc.code, str(exc))
    notice_id, event_type = notice.get("id"), notice.get("event_type")
    if isinstance(resource.get("out_trade_no"), str):
        archive["out_trade_no"] = resource["out_trade_no"][:64]
    if isinstance(resource.get("out_refund_no"), str):
        archive["out_refund_no"] = resource["out_refund_no"][:64]
    if not isinstance(notice_id, str) or not notice_id:
        return await refuse(400, "no_notice_id", "notice has no id")
    if event_type == "TRANSACTION.SUCCESS":
        kind = "payment"
    elif isinstance(event_type, str) and event_type.startswith("REFUND."):
        kind = "refund"
    else:
        return await refuse(400, "unsupported_event_type", f"event_type {event_type!r} is not handled here")

    now = clock()
    try:
        async with pool.acquire() as conn:
            async with conn.transaction():
                if kind == "payment":
                    result = await commands.apply_payment_notice(conn, notice_id, resource, merchant=merchant, now=now,
                                                                 auto_complete_days=settings.auto_complete_days)
                else:
                    result = await commands.apply_refund_notice(conn, notice_id, resource, merchant=merchant, now=now)
                await store.archive_notice(conn, **archive, outcome=result.outcome, http_status=204)
    except NoticeRejectedError as exc:
        return await refuse(exc.status, exc.code, str(exc))
    log.info("wechatpay_notice_applied", notice_id=notice_id, event_type=event_type, outcome=result.outcome,
             out_trade_no=result.out_trade_no, out_refund_no=result.out_refund_no)
    if result.outcome == "paid_after_cancel":
        log.error("payment_after_cancel", out_trade_no=result.out_trade_no, transaction_id=resource.get("transaction_id"))
    return Answer(204, result.outcome)


@router.post(NOTIFY_PATH, status_code=204,
             responses={204: {"description": "accepted (also for a repeat)"},
                        400: {"description": "malformed, undecryptable or unsupported notice"},
                        401: {"description": "bad signature, unknown serial, stale timestamp, probe"},
                        404: {"description": "unknown order or refund"},
                        409: {"description": "contradicts a final state"},
                        422: {"description": "does not match the order (mchid, appid, amount, state)"}})
async def wechatpay_notify(request: Request, rt: RuntimeDep, settings: SettingsDep, clock: ClockDep) -> Response:
    """WeChat Pay notify URL for payments (TRANSACTION.SUCCESS) and refunds (REFUND.*)."""
    body = await request.body()  # raw bytes: the signature covers them exactly
    try:
        answer = await handle_notice(rt.pool, rt.extras["verifier"], rt.extras["merchant"], settings, clock,
                                     request.headers, body)
    except Exception:
        log.exception("wechatpay_notice_failed")
        return JSONResponse({"code": "FAIL", "message": "internal_error: try again"}, status_code=500)
    if answer.status < 300 and answer.outcome not in ("duplicate", "duplicate_notice", "rejected"):
        rt.relay.kick()
    return answer.response()
