"""Operator routes: the review queue (any operator role reads) and decisions (role finance)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from services.payout import service_layer as sl
from services.payout.api.deps import ConnDep, SnapshotConnDep, RuntimeDep, SettingsDep, kick, utcnow
from services.payout.api.schemas import Available, Decision, WithdrawalAdmin, WithdrawalAdminPage
from services.payout.api.withdrawals import available_of
from services.payout.domain.errors import WithdrawalNotFoundError
from services.payout.domain.withdrawal import Status
from services.payout.store import withdrawals as wd
from shared.identity import FinanceIdentity, StaffIdentity

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/withdrawals", response_model=WithdrawalAdminPage)
async def list_withdrawals(_: StaffIdentity, conn: SnapshotConnDep, settings: SettingsDep,
                           status: Status | None = None,
                           promoter_id: str | None = None,
                           limit: Annotated[int, Query(ge=1, le=500)] = 100,
                           after: datetime | None = None) -> WithdrawalAdminPage:
    """Withdrawals oldest first; `status=pending_review` is the review queue."""
    rows = await wd.list_all(conn, status=status, promoter_id=promoter_id, limit=limit, after=after)
    return WithdrawalAdminPage(items=[WithdrawalAdmin.of(r, mchid=settings.wechat_mchid, appid=settings.wechat_appid)
                                      for r in rows])


@router.get("/withdrawals/{withdrawal_id}", response_model=WithdrawalAdmin)
async def read_withdrawal(withdrawal_id: uuid.UUID, _: StaffIdentity, conn: SnapshotConnDep,
                          settings: SettingsDep) -> WithdrawalAdmin:
    row = await wd.get(conn, withdrawal_id)
    if row is None:
        raise WithdrawalNotFoundError(f"no withdrawal {withdrawal_id}")
    return WithdrawalAdmin.of(row, mchid=settings.wechat_mchid, appid=settings.wechat_appid)


@router.post("/withdrawals/{withdrawal_id}/decision", response_model=WithdrawalAdmin,
             responses={409: {"description": "already decided the other way"}, 404: {"description": "no such withdrawal"},
                        403: {"description": "the finance role is required, or it is the reviewer's own withdrawal"}})
async def decide(withdrawal_id: uuid.UUID, body: Decision, admin: FinanceIdentity, conn: ConnDep, rt: RuntimeDep,
                 settings: SettingsDep) -> WithdrawalAdmin:
    """Approve (the transfer starts) or reject with a reason (the reservation returns, once).
    Repeating the same decision is harmless. Nobody decides their own withdrawal (403); above
    PAYOUT_DUAL_APPROVAL_ABOVE_FEN the first approval is recorded (`first_approved_by`) and a
    second, different approver approves it."""
    row, changed = await sl.decide_withdrawal(conn, withdrawal_id, decision=body.decision, reason=body.reason,
                                              by=admin.user_id, now=utcnow(),
                                              dual_approval_above_fen=settings.dual_approval_above_fen)
    if changed:
        kick(rt)
    return WithdrawalAdmin.of(row, mchid=settings.wechat_mchid, appid=settings.wechat_appid)


@router.get("/promoters/{promoter_id}/available", response_model=Available)
async def promoter_available(promoter_id: str, _: StaffIdentity, conn: SnapshotConnDep, settings: SettingsDep) -> Available:
    return await available_of(conn, promoter_id, settings)
