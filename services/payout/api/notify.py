"""WeChat Pay's transfer notices (MCHTRANSFER.BILL.FINISHED): verified, decrypted, deduped on
the notice id, applied in one transaction. WeChat decides by the HTTP status: 204 = taken."""
from __future__ import annotations

import hashlib

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.payout import service_layer as sl
from services.payout.api.deps import RuntimeDep, utcnow
from services.payout.store import withdrawals as wd
from shared.wechatpay import NotifyError

log = structlog.get_logger(__name__)
router = APIRouter(tags=["wechatpay"])

TRANSFER_FINISHED = "MCHTRANSFER.BILL.FINISHED"


def _fail(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": "FAIL", "message": message}, status_code=status)


@router.post("/v1/wechatpay/transfer-notify", status_code=204,
             responses={400: {"description": "malformed"}, 401: {"description": "signature refused"},
                        503: {"description": "this instance has no WeChat transfer keys configured"}})
async def transfer_notify(request: Request, rt: RuntimeDep) -> Response:
    verifier = rt.extras.get("notify_verifier")
    if verifier is None:
        return _fail(503, "transfer notices not configured")
    raw = await request.body()
    try:
        notice, resource = verifier.verify_and_decrypt(request.headers, raw)
    except NotifyError as exc:
        log.warning("transfer_notice_refused", code=exc.code, reason=str(exc))
        return _fail(exc.status, str(exc))
    notice_id, event_type = str(notice.get("id") or ""), str(notice.get("event_type") or "")
    if not notice_id:
        return _fail(400, "notice has no id")
    settings = rt.settings
    async with rt.pool.acquire() as conn, conn.transaction():
        fresh = await wd.remember_notice(conn, notice_id=notice_id, event_type=event_type,
                                         out_bill_no=resource.get("out_bill_no"), state=resource.get("state"),
                                         outcome="received", body_sha256=hashlib.sha256(raw).hexdigest())
        if not fresh:
            log.info("transfer_notice_duplicate", notice_id=notice_id)
            return Response(status_code=204)
        outcome = "ignored"
        if event_type == TRANSFER_FINISHED:
            outcome = await sl.apply_bill(conn, resource, mchid=settings.wechat_mchid, timing=rt.extras["timing"],
                                          now=utcnow())
        await wd.set_notice_outcome(conn, notice_id, outcome)
    log.info("transfer_notice_applied", notice_id=notice_id, out_bill_no=resource.get("out_bill_no"),
             state=resource.get("state"), outcome=outcome)
    rt.relay.kick()
    return Response(status_code=204)
