"""Request and response shapes of the payout HTTP API. Money is integer fen."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from services.payout.domain.withdrawal import CONFIRMABLE_BILL_STATES

#: no single amount of money is larger (10 million yuan); bigger integers are refused with 422
MAX_FEN = 1_000_000_000


class WithdrawalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: what leaves the available balance; the fee is taken out of it (a JSON integer: "150" and 150.0 are refused)
    amount_fen: StrictInt = Field(ge=-MAX_FEN, le=MAX_FEN)
    #: chosen by the client, one per intended withdrawal; a retry with the same key returns the same withdrawal
    idempotency_key: str | None = Field(None, min_length=1, max_length=64)
    #: optional and only checked: the payee is always the identity's openid (the gateway signs it
    #: from the WeChat login); a different one is refused with 403 payee_not_identity
    openid: str | None = Field(None, min_length=1, max_length=64)
    #: required from 2,000 yuan; sent to WeChat encrypted, never stored in clear
    real_name: str | None = Field(None, max_length=64)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    reason: str | None = Field(None, max_length=200)


class ConfirmInfo(BaseModel):
    """The arguments of `wx.requestMerchantTransfer` in the mini-program."""

    mchId: str
    appId: str
    package: str
    openId: str


class WithdrawalPublic(BaseModel):
    withdrawal_id: uuid.UUID
    promoter_id: str
    amount_fen: int
    fee_fen: int
    #: income tax withheld (docs/tax.md); the transfer is amount - fee - tax
    tax_withheld_fen: int
    #: what the WeChat transfer pays into the promoter's WeChat balance
    net_fen: int
    status: str
    requested_at: datetime
    automatic: bool
    decided_by: str | None
    decided_at: datetime | None
    reject_reason: str | None
    out_bill_no: str | None
    transfer_bill_no: str | None
    bill_state: str | None
    fail_reason: str | None
    release_reason: str | None
    finished_at: datetime | None
    has_real_name: bool
    #: present while the user has to confirm the transfer in the mini-program
    confirm: ConfirmInfo | None = None

    @classmethod
    def of(cls, w: asyncpg.Record, *, mchid: str, appid: str) -> "WithdrawalPublic":
        confirm = None
        if w["status"] == "transferring" and w["bill_state"] in CONFIRMABLE_BILL_STATES and w["package_info"]:
            confirm = ConfirmInfo(mchId=mchid, appId=appid, package=w["package_info"], openId=w["openid"])
        return cls(
            withdrawal_id=w["withdrawal_id"], promoter_id=w["promoter_id"], amount_fen=w["amount_fen"],
            fee_fen=w["fee_fen"], tax_withheld_fen=w["tax_withheld_fen"], net_fen=w["net_fen"], status=w["status"], requested_at=w["requested_at"],
            automatic=w["automatic"], decided_by=w["decided_by"], decided_at=w["decided_at"],
            reject_reason=w["reject_reason"], out_bill_no=w["out_bill_no"], transfer_bill_no=w["transfer_bill_no"],
            bill_state=w["bill_state"], fail_reason=w["fail_reason"], release_reason=w["release_reason"],
            finished_at=w["finished_at"], has_real_name=w["user_name_cipher"] is not None, confirm=confirm,
        )


class WithdrawalAdmin(WithdrawalPublic):
    openid: str
    idempotency_key: str
    last_error: str | None
    checks: int
    #: above the dual-approval threshold: who approved first (a second, different approver approves)
    first_approved_by: str | None = None

    @classmethod
    def of(cls, w: asyncpg.Record, *, mchid: str, appid: str) -> "WithdrawalAdmin":  # type: ignore[override]
        base = WithdrawalPublic.of(w, mchid=mchid, appid=appid).model_dump()
        return cls(**base, openid=w["openid"], idempotency_key=w["idempotency_key"], last_error=w["last_error"],
                   checks=w["checks"], first_approved_by=w["first_approved_by"])


class WithdrawalPage(BaseModel):
    items: list[WithdrawalPublic]


class WithdrawalAdminPage(BaseModel):
    items: list[WithdrawalAdmin]


class Rules(BaseModel):
    min_fen: int
    max_fen: int
    fee_bp: int
    fee_max_fen: int
    daily_count_max: int
    daily_amount_max_fen: int
    auto_approve_max_fen: int
    real_name_min_fen: int


class Available(BaseModel):
    promoter_id: str
    #: may be negative after a refund reversed already settled commission
    available_fen: int
    reserved_fen: int
    withdrawn_fen: int
    today_count: int
    today_amount_fen: int
    #: the most one request could take now (balance, maximum and today's limits)
    withdrawable_fen: int
    rules: Rules


class QuotePublic(BaseModel):
    amount_fen: int
    fee_fen: int
    #: income tax a request made now would withhold (docs/tax.md; the tax quote has every figure)
    tax_withheld_fen: int
    #: what the WeChat transfer would pay: amount - fee - tax (as `net_fen` of a withdrawal)
    net_fen: int
