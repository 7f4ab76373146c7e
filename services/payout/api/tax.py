"""Tax routes: payee identity (with consent), the withholding quote shown before a withdrawal is
confirmed, the period's income report for the platform filing, and erasure of a person's personal
data (crypto-shredding). See docs/tax.md."""
from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.payout.api.deps import ConnDep, RuntimeDep, SnapshotConnDep, SettingsDep, utcnow
from services.payout.domain import payee as rules
from services.payout.domain import policy
from services.payout.service_layer import withholding_for
from services.payout.domain.withdrawal import business_day
from services.payout.store import payee as store
from fastapi import Depends

from shared.erasure import ErasureIn
from shared.identity import CurrentIdentity, Identity, OperatorIdentity, Role, require_role

router = APIRouter(tags=["tax"])


def _master_key(rt: RuntimeDep) -> bytes:
    """The key that wraps every person's data key: the setting `PAYOUT_IDENTITY_MASTER_KEY` (base64,
    32 bytes, from the secret store), checked when the service starts (`PayoutSettings.identity_master`)."""
    return rt.extras["identity_master_key"]


MasterKeyDep = Annotated[bytes, Depends(_master_key)]


class PayeeIdentityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    real_name: str = Field(min_length=2, max_length=64)
    id_number: str = Field(min_length=18, max_length=18)
    consent: bool = Field(description=f"agreement to the use for {rules.CONSENT_PURPOSE} (text version {rules.CONSENT_VERSION})")


class PayeeIdentityOut(BaseModel):
    promoter_id: str
    real_name_masked: str
    id_number_masked: str
    consent_purpose: str
    consent_version: str
    consent_at: datetime


@router.put("/v1/promoters/me/payee-identity", response_model=PayeeIdentityOut)
async def put_payee_identity(body: PayeeIdentityIn, identity: CurrentIdentity, conn: ConnDep,
                             master: MasterKeyDep) -> PayeeIdentityOut:
    """Record the promoter's real name and ID number for tax, encrypted with their own key; consent is required."""
    if not body.consent:
        raise rules.ConsentRequiredError(f"consent to {rules.CONSENT_PURPOSE} (version {rules.CONSENT_VERSION}) is required")
    name, number = rules.check_real_name(body.real_name), rules.check_id_number(body.id_number)
    now = utcnow()
    async with conn.transaction():
        if await store.erased(conn, identity.user_id):
            raise rules.PersonalDataErasedError("this person's personal data was erased")
        await store.save_identity(conn, master, identity.user_id, name, number, now)
    return PayeeIdentityOut(promoter_id=identity.user_id, real_name_masked=rules.mask_name(name), id_number_masked=rules.mask_id(number),
                            consent_purpose=rules.CONSENT_PURPOSE, consent_version=rules.CONSENT_VERSION, consent_at=now)


@router.get("/v1/promoters/me/payee-identity", response_model=PayeeIdentityOut)
async def get_payee_identity(identity: CurrentIdentity, conn: SnapshotConnDep, master: MasterKeyDep) -> PayeeIdentityOut:
    """What is recorded, masked."""
    got = (await store.load_identities(conn, master, [identity.user_id])).get(identity.user_id)
    if got is None:
        raise rules.PayeeIdentityMissingError("no payee identity recorded")
    if got["real_name"] is None:
        raise rules.PersonalDataErasedError("this person's personal data was erased")
    return PayeeIdentityOut(promoter_id=identity.user_id, real_name_masked=rules.mask_name(got["real_name"]),
                            id_number_masked=rules.mask_id(got["id_number"]), consent_purpose=rules.CONSENT_PURPOSE,
                            consent_version=got["consent_version"], consent_at=got["consent_at"])


class TaxQuote(BaseModel):
    amount_fen: int
    fee_fen: int
    #: amount - fee (before tax; kept for clients written before the tax was deducted)
    net_fen: int
    income_fen: int
    withheld_fen: int
    after_tax_fen: int
    #: what the WeChat transfer will pay into the promoter's WeChat balance: amount - fee - withheld
    transfer_fen: int
    months: int
    cumulative_income_fen: int
    cumulative_expense_fen: int
    cumulative_basic_deduction_fen: int
    taxable_fen: int
    rate_bp: int
    quick_deduction_fen: int
    cumulative_tax_fen: int
    withheld_before_fen: int
    basis: str = "cumulative prepayment of labour remuneration, STA announcement 2025 No. 16"


@router.get("/v1/promoters/me/tax-quote", response_model=TaxQuote)
async def tax_quote(identity: CurrentIdentity, conn: SnapshotConnDep, settings: SettingsDep,
                    amount_fen: Annotated[int, Query(gt=0, le=10**12)]) -> TaxQuote:
    """The tax a withdrawal of `amount_fen` now would withhold, after this year's earlier withdrawals
    (paid, and requested ones not returned, with the tax withheld on each), and what the transfer
    would then pay: shown before the promoter confirms. A request made now withholds the same
    (the same function, `service_layer.withholding_for`), unless another withdrawal lands in between."""
    today = business_day(utcnow(), settings.business_timezone)
    w = await withholding_for(conn, identity.user_id, amount_fen, today)
    q = policy.quote(settings.policy(), amount_fen)
    return TaxQuote(amount_fen=amount_fen, fee_fen=q.fee_fen, net_fen=q.net_fen, income_fen=w.income_fen,
                    withheld_fen=w.withheld_fen, after_tax_fen=w.after_tax_fen, transfer_fen=q.net_fen - w.withheld_fen,
                    months=w.months, cumulative_income_fen=w.cumulative_income_fen,
                    cumulative_expense_fen=int(w.cumulative_expense_fen),
                    cumulative_basic_deduction_fen=w.cumulative_basic_deduction_fen, taxable_fen=int(w.taxable_fen),
                    rate_bp=w.rate_bp, quick_deduction_fen=w.quick_deduction_fen, cumulative_tax_fen=w.cumulative_tax_fen,
                    withheld_before_fen=w.withheld_before_fen)


REPORT_COLUMNS = ("promoter_id", "real_name", "id_number", "identity", "payments", "income_fen", "withheld_fen",
                  "after_tax_fen", "income_yuan", "withheld_yuan")


async def income_report(conn: Any, master: bytes, tz: str, start: date, end: date) -> list[dict[str, Any]]:
    """Per person paid in [start, end) (the withdrawals' business days): payments, income, and the tax
    withheld on them as recorded when each was requested (the amount kept out of its transfer)."""
    rows = await store.paid_in(conn, start, end)
    by_person: dict[str, list[Any]] = {}
    for r in rows:
        by_person.setdefault(r["promoter_id"], []).append(r)
    ids = await store.load_identities(conn, master, list(by_person))
    out = []
    for pid, rs in sorted(by_person.items()):
        who = ids.get(pid)
        status = "missing" if who is None else ("erased" if who["real_name"] is None else "ok")
        income = sum(r["amount_fen"] for r in rs)
        withheld = sum(r["tax_withheld_fen"] for r in rs)
        out.append({"promoter_id": pid, "real_name": (who or {}).get("real_name") or "", "id_number": (who or {}).get("id_number") or "",
                    "identity": status, "payments": len(rs), "income_fen": income, "withheld_fen": withheld,
                    "after_tax_fen": income - withheld, "income_yuan": f"{income / 100:.2f}", "withheld_yuan": f"{withheld / 100:.2f}"})
    return out


@router.get("/v1/admin/tax/income-report", response_class=Response,
            responses={200: {"content": {"text/csv": {}, "application/json": {}}, "description": "the report"}})
async def get_income_report(_: Annotated[Identity, Depends(require_role(Role.FINANCE, Role.AUDITOR))], conn: SnapshotConnDep,
                            settings: SettingsDep, master: MasterKeyDep,
                            from_: Annotated[date, Query(alias="from", description="first business day")],
                            to: Annotated[date, Query(description="day after the last")]) -> Response:
    """The period's labour remuneration per person for the platform's filing (CSV, UTF-8)."""
    if from_ >= to:
        raise rules.EmptyPeriodError("`from` must be before `to`")
    rows = await income_report(conn, master, settings.business_timezone, from_, to)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=REPORT_COLUMNS)
    w.writeheader()
    w.writerows(rows)
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="income-{from_}-{to}.csv"'})


@router.post("/v1/admin/persons/{person_id}/erase")
async def erase_person(person_id: str, body: ErasureIn, admin: OperatorIdentity, conn: ConnDep) -> dict[str, Any]:
    """Erase a person's personal data held by payout: their key is shredded (name and ID number can
    no longer be decrypted, in this database or any backup), their withdrawals' openid and encrypted
    name are cleared. Amounts, ids and times stay: the money trail remains provable."""
    async with conn.transaction():
        done = await store.erase(conn, person_id, admin.user_id, body.reason, utcnow())
    return {"person_id": person_id, **done}
