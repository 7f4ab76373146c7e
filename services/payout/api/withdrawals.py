"""Promoter-facing routes: request, list and read withdrawals; the available balance."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Header, Query, Response

from services.payout import service_layer as sl
from services.payout.api.deps import ConnDep, SnapshotConnDep, RuntimeDep, SettingsDep, kick, utcnow
from services.payout.api.schemas import Available, QuotePublic, Rules, WithdrawalCreate, WithdrawalPage, WithdrawalPublic
from services.payout.domain import policy as rules
from services.payout.domain.errors import (
    IdempotencyKeyRequiredError, IdentityWithoutOpenidError, PayeeNotIdentityError, WithdrawalNotFoundError,
)
from services.payout.domain.withdrawal import Status, business_day
from services.payout.store import ledger as ledger_store
from services.payout.store import withdrawals as wd
from shared.identity import CurrentIdentity, Identity
from shared.limits import MAX_FEN, rate_limited

router = APIRouter(tags=["withdrawals"])


def payee_of(identity: Identity, appid: str, claimed: str | None) -> str:
    """The openid a withdrawal pays: the identity's, for this mini-program's appid. A body that
    names another openid is refused, so a stolen session cannot redirect the money."""
    if not identity.openid or (appid and identity.appid != appid):
        raise IdentityWithoutOpenidError("the identity carries no openid for this mini-program")
    if claimed is not None and claimed != identity.openid:
        raise PayeeNotIdentityError("withdrawals pay only the signed-in user's own openid")
    return identity.openid


@router.post("/v1/withdrawals", response_model=WithdrawalPublic, status_code=201,
             dependencies=[Depends(rate_limited("withdrawal"))],
             responses={429: {"description": "rate limited (`Retry-After` says when to try again)"},
                        200: {"model": WithdrawalPublic, "description": "a repeat of an earlier request (same key)"},
                        403: {"description": "the body's openid is not the identity's (payee_not_identity), "
                                              "or the identity carries no openid for this appid"},
                        409: {"description": "idempotency key reused for a different request"},
                        422: {"description": "refused: `code` names the rule"}})
async def request_withdrawal(body: WithdrawalCreate, identity: CurrentIdentity, conn: ConnDep, rt: RuntimeDep,
                             settings: SettingsDep, response: Response,
                             idempotency_key: Annotated[str | None, Header(max_length=64)] = None) -> WithdrawalPublic:
    """Reserve `amount_fen` of the promoter's available balance for a withdrawal to their WeChat
    balance. Small amounts are approved at once; larger ones wait for an operator. The payee is
    the identity's openid (signed by the gateway for this mini-program's appid), never the body's."""
    payee = payee_of(identity, settings.wechat_appid, body.openid)
    key = body.idempotency_key or idempotency_key
    if not key:
        raise IdempotencyKeyRequiredError("idempotency_key (body) or Idempotency-Key (header) is required")
    client = rt.extras.get("transfer_client")
    cmd = sl.RequestWithdrawal(promoter_id=identity.user_id, amount_fen=body.amount_fen, idempotency_key=key,
                               openid=payee, real_name=body.real_name)
    try:
        row, created = await sl.request_withdrawal(
            conn, cmd, policy=settings.policy(), tz=settings.business_timezone,
            encrypt_name=client.encrypt_name if client is not None else None, now=utcnow())
    except asyncpg.UniqueViolationError:  # the same key raced in on another connection: answer with the first
        row, created = await wd.by_idempotency_key(conn, identity.user_id, key), False
        if row is None:
            raise
    if created:
        kick(rt)
    else:
        response.status_code = 200
    return WithdrawalPublic.of(row, mchid=settings.wechat_mchid, appid=settings.wechat_appid)


@router.get("/v1/withdrawals", response_model=WithdrawalPage)
async def list_withdrawals(identity: CurrentIdentity, conn: SnapshotConnDep, settings: SettingsDep,
                           status: Status | None = None,
                           limit: Annotated[int, Query(ge=1, le=100)] = 20,
                           before: datetime | None = None) -> WithdrawalPage:
    """The promoter's own withdrawals, newest first (`before` = the last `requested_at` seen)."""
    rows = await wd.list_for_promoter(conn, identity.user_id, status=status, limit=limit, before=before)
    return WithdrawalPage(items=[WithdrawalPublic.of(r, mchid=settings.wechat_mchid, appid=settings.wechat_appid)
                                 for r in rows])


@router.get("/v1/withdrawals/quote", response_model=QuotePublic)
async def quote(identity: CurrentIdentity, conn: SnapshotConnDep, settings: SettingsDep,
                amount_fen: Annotated[int, Query(ge=-MAX_FEN, le=MAX_FEN)]) -> QuotePublic:
    """Fee, income tax withheld and transferred amount for `amount_fen` requested now, under the
    merchant's rules and after the promoter's earlier withdrawals this year (no balance check)."""
    q = rules.quote(settings.policy(), amount_fen)
    w = await sl.withholding_for(conn, identity.user_id, q.amount_fen, business_day(utcnow(), settings.business_timezone))
    q = rules.after_tax(q, w.withheld_fen)
    return QuotePublic(amount_fen=q.amount_fen, fee_fen=q.fee_fen, tax_withheld_fen=q.tax_withheld_fen, net_fen=q.net_fen)


@router.get("/v1/withdrawals/{withdrawal_id}", response_model=WithdrawalPublic)
async def read_withdrawal(withdrawal_id: uuid.UUID, identity: CurrentIdentity, conn: SnapshotConnDep,
                          settings: SettingsDep) -> WithdrawalPublic:
    """One withdrawal; while the user must confirm the transfer, `confirm` carries the
    arguments of `wx.requestMerchantTransfer` ({mchId, appId, package, openId})."""
    row = await wd.get(conn, withdrawal_id)
    if row is None or (row["promoter_id"] != identity.user_id and not identity.is_staff):
        raise WithdrawalNotFoundError(f"no withdrawal {withdrawal_id}")
    return WithdrawalPublic.of(row, mchid=settings.wechat_mchid, appid=settings.wechat_appid)


async def available_of(conn: asyncpg.Connection, promoter_id: str, settings) -> Available:
    policy = settings.policy()
    bal = await ledger_store.get_balance(conn, promoter_id)
    usage = await wd.day_usage(conn, promoter_id, business_day(utcnow(), settings.business_timezone))
    available = bal["available_fen"] if bal else 0
    withdrawable = 0
    if usage.count < policy.daily_count_max:
        withdrawable = max(0, min(available, policy.max_fen, policy.daily_amount_max_fen - usage.amount_fen))
    return Available(
        promoter_id=promoter_id, available_fen=available, reserved_fen=bal["reserved_fen"] if bal else 0,
        withdrawn_fen=bal["withdrawn_fen"] if bal else 0, today_count=usage.count, today_amount_fen=usage.amount_fen,
        withdrawable_fen=withdrawable if withdrawable >= policy.min_fen else 0,
        rules=Rules(min_fen=policy.min_fen, max_fen=policy.max_fen, fee_bp=policy.fee_bp, fee_max_fen=policy.fee_max_fen,
                    daily_count_max=policy.daily_count_max, daily_amount_max_fen=policy.daily_amount_max_fen,
                    auto_approve_max_fen=policy.auto_approve_max_fen, real_name_min_fen=policy.real_name_min_fen),
    )


@router.get("/v1/promoters/me/available", response_model=Available, tags=["balance"])
async def my_available(identity: CurrentIdentity, conn: SnapshotConnDep, settings: SettingsDep) -> Available:
    """The promoter's available, reserved and withdrawn money, and today's use of the limits."""
    return await available_of(conn, identity.user_id, settings)
