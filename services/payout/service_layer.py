"""The payout use cases, each one PostgreSQL transaction: state change, ledger change and the
events announcing them (outbox) commit together or not at all.

Locks, always in this order: a withdrawal row, then the promoter's balance row. A request
holds only the balance row while it inserts a new withdrawal."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Literal

import asyncpg
import structlog

from services.payout.domain import withdrawal as rules
from services.payout.domain.approval import approval_step, check_not_own
from services.payout.domain.errors import (
    AlreadyDecidedError, IdempotencyKeyReusedError, InsufficientBalanceError, ReasonRequiredError,
    TransferNotConfiguredError, WithdrawalNotFoundError,
)
from services.payout.domain.policy import WithdrawalPolicy, after_tax, check_request, needs_review, quote, check_real_name
from services.payout.domain.tax import Withheld, Withholding, withholding_on
from services.payout.store import ledger as ledger_store
from services.payout.store import withdrawals as wd
from shared.contracts.payout import (
    WithdrawalApproved, WithdrawalPaid, WithdrawalRejected, WithdrawalReleased, WithdrawalRequested,
    WithdrawalTransferCreated,
)
from shared.events import Envelope, EventPayload, derive_event_id, new_event
from shared.outbox import record_events
from shared.topics import PAYOUT_EVENTS

log = structlog.get_logger(__name__)

NameEncrypter = Callable[[str], tuple[str, str]]


def _event(payload: EventPayload, w_id: uuid.UUID, step: str, *parts: object, at: datetime) -> Envelope:
    # deterministic ids: whatever path writes a step twice, consumers see it once
    return new_event(payload, event_id=derive_event_id(w_id, step, *parts), occurred_at=at,
                     correlation_id=derive_event_id(w_id, "requested"))


async def withholding_for(conn: asyncpg.Connection, promoter_id: str, amount_fen: int, day: date) -> Withholding:
    """The income tax a withdrawal of `amount_fen` requested on business day `day` withholds, after the
    promoter's withdrawals of the year not returned (paid or in flight) and the tax withheld on each.
    The request (under the promoter's balance lock) and the quote shown before it use this one function."""
    rows = await wd.tax_basis(conn, promoter_id, date(day.year, 1, 1), day)
    return withholding_on([Withheld(r["business_day"], r["amount_fen"], r["tax_withheld_fen"]) for r in rows],
                          amount_fen, day)


@dataclass(frozen=True)
class RequestWithdrawal:
    promoter_id: str
    amount_fen: int
    idempotency_key: str
    openid: str
    real_name: str | None = None


async def request_withdrawal(conn: asyncpg.Connection, cmd: RequestWithdrawal, *, policy: WithdrawalPolicy, tz: str,
                             encrypt_name: NameEncrypter | None, now: datetime) -> tuple[asyncpg.Record, bool]:
    """Reserve the amount and record the withdrawal (and its automatic approval). Returns
    (withdrawal, created); a repeat of an idempotency key returns the first withdrawal."""
    q = quote(policy, cmd.amount_fen)                     # refuse the impossible before any lock
    check_real_name(policy, cmd.amount_fen, cmd.real_name)
    cipher = serial = None
    if cmd.real_name and cmd.real_name.strip():
        if encrypt_name is None:
            raise TransferNotConfiguredError("cannot encrypt the real name: WeChat keys not configured")
        cipher, serial = encrypt_name(cmd.real_name.strip())
    async with conn.transaction():
        balance = await ledger_store.lock_balance(conn, cmd.promoter_id)   # one promoter's requests queue here
        existing = await wd.by_idempotency_key(conn, cmd.promoter_id, cmd.idempotency_key)
        if existing is not None:
            if existing["amount_fen"] != cmd.amount_fen or existing["openid"] != cmd.openid:
                raise IdempotencyKeyReusedError("this idempotency key was used for a different withdrawal")
            return existing, False
        day = rules.business_day(now, tz)
        usage = await wd.day_usage(conn, cmd.promoter_id, day)
        q = check_request(policy, cmd.amount_fen, cmd.real_name, balance["available_fen"] if balance else 0, usage)
        # the tax is fixed now, under the lock: this promoter's earlier requests are all counted
        q = after_tax(q, (await withholding_for(conn, cmd.promoter_id, q.amount_fen, day)).withheld_fen)
        if not await ledger_store.reserve(conn, cmd.promoter_id, q.amount_fen):
            raise InsufficientBalanceError("available balance is lower than the amount")
        w_id = uuid.uuid4()
        automatic = not needs_review(policy, q.amount_fen)
        row = await wd.insert(
            conn, withdrawal_id=w_id, promoter_id=cmd.promoter_id, idempotency_key=cmd.idempotency_key,
            amount_fen=q.amount_fen, fee_fen=q.fee_fen, net_fen=q.net_fen, tax_withheld_fen=q.tax_withheld_fen,
            openid=cmd.openid,
            user_name_cipher=cipher, user_name_serial=serial,
            status="approved" if automatic else "pending_review", business_day=day, requested_at=now,
            automatic=automatic, decided_at=now if automatic else None,
            attempt=1 if automatic else 0, out_bill_no=rules.out_bill_no(w_id, 1) if automatic else None,
            next_check_at=now if automatic else None,
        )
        events = [_event(WithdrawalRequested(withdrawal_id=str(w_id), promoter_id=cmd.promoter_id,
                                             amount_fen=q.amount_fen, fee_fen=q.fee_fen, requested_at=now,
                                             tax_withheld_fen=q.tax_withheld_fen),
                         w_id, "requested", at=now)]
        if automatic:
            events.append(_event(WithdrawalApproved(withdrawal_id=str(w_id), promoter_id=cmd.promoter_id,
                                                    automatic=True, approved_at=now), w_id, "approved", at=now))
        await record_events(conn, PAYOUT_EVENTS, events)
    log.info("withdrawal_requested", withdrawal_id=str(w_id), promoter_id=cmd.promoter_id,
             amount_fen=q.amount_fen, fee_fen=q.fee_fen, tax_withheld_fen=q.tax_withheld_fen, net_fen=q.net_fen,
             automatic=automatic)
    return row, True


async def decide_withdrawal(conn: asyncpg.Connection, withdrawal_id: uuid.UUID, *,
                            decision: Literal["approve", "reject"], reason: str | None, by: str,
                            now: datetime, dual_approval_above_fen: int | None = None) -> tuple[asyncpg.Record, bool]:
    """An operator's decision on a withdrawal under review. Returns (withdrawal, changed); the
    same decision repeated changes nothing, the opposite one is refused. Nobody decides their
    own withdrawal; above `dual_approval_above_fen` two different approvers are needed
    (domain.approval)."""
    if decision == "reject" and not (reason and reason.strip()):
        raise ReasonRequiredError("a rejection needs a reason")
    async with conn.transaction():
        w = await wd.lock(conn, withdrawal_id)
        if w is None:
            raise WithdrawalNotFoundError(f"no withdrawal {withdrawal_id}")
        check_not_own(w["promoter_id"], by)
        if w["status"] != "pending_review":
            already = (w["status"] == "rejected") if decision == "reject" else (w["status"] != "rejected")
            if already:
                return w, False
            raise AlreadyDecidedError(f"withdrawal is {w['status']}")
        if decision == "reject":
            await ledger_store.release(conn, w["promoter_id"], w["amount_fen"])
            w = await wd.update(conn, withdrawal_id, status="rejected", decided_by=by, decided_at=now,
                                reject_reason=reason.strip(), finished_at=now)
            event = _event(WithdrawalRejected(withdrawal_id=str(withdrawal_id), promoter_id=w["promoter_id"],
                                              amount_fen=w["amount_fen"], reason=reason.strip(), rejected_by=by,
                                              rejected_at=now), withdrawal_id, "rejected", at=now)
        else:
            step = approval_step(amount_fen=w["amount_fen"], dual_above_fen=dual_approval_above_fen,
                                 first_approved_by=w["first_approved_by"], by=by)
            if step == "repeat_first_approval":
                return w, False
            if step == "first_approval":
                w = await wd.update(conn, withdrawal_id, first_approved_by=by, first_approved_at=now)
                log.info("withdrawal_first_approval", withdrawal_id=str(withdrawal_id), by=by)
                return w, True
            w = await wd.update(conn, withdrawal_id, status="approved", decided_by=by, decided_at=now, attempt=1,
                                out_bill_no=rules.out_bill_no(withdrawal_id, 1), next_check_at=now)
            event = _event(WithdrawalApproved(withdrawal_id=str(withdrawal_id), promoter_id=w["promoter_id"],
                                              automatic=False, approved_by=by, approved_at=now),
                           withdrawal_id, "approved", at=now)
        await record_events(conn, PAYOUT_EVENTS, [event])
    log.info("withdrawal_decided", withdrawal_id=str(withdrawal_id), decision=decision, by=by)
    return w, True


# -- the bill ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    open_bill_query_s: float
    retry_base_s: float
    retry_max_s: float


BillApplied = Literal["unknown_bill", "already_final", "mismatch", "paid", "released", "open"]


async def apply_bill(conn: asyncpg.Connection, bill: dict[str, Any], *, mchid: str, timing: Timing,
                     now: datetime) -> BillApplied:
    """Bring a withdrawal in line with its bill as WeChat reports it (create answer, query or
    notice). A final state is applied once: the withdrawal row is locked and only a
    non-final withdrawal moves."""
    bill_no, state = str(bill.get("out_bill_no") or ""), str(bill.get("state") or "")
    async with conn.transaction():
        w = await wd.lock_by_bill(conn, bill_no)
        if w is None or not state:
            return "unknown_bill"
        if w["status"] in rules.FINAL_STATUSES:
            return "already_final"
        w_id, promoter = w["withdrawal_id"], w["promoter_id"]
        amount = bill.get("transfer_amount")
        if (amount is not None and int(amount) != w["net_fen"]) or (bill.get("openid") not in (None, w["openid"])) \
                or (bill.get("mch_id") not in (None, mchid)):
            log.error("transfer_bill_mismatch", withdrawal_id=str(w_id), out_bill_no=bill_no, bill_amount=amount,
                      net_fen=w["net_fen"])
            await wd.update(conn, w_id, last_error="bill does not match the withdrawal", lease_until=None,
                            next_check_at=now + timedelta(seconds=timing.retry_max_s))
            return "mismatch"
        events: list[Envelope] = []
        fields: dict[str, Any] = {"bill_state": state, "lease_until": None, "last_error": None}
        if bill.get("transfer_bill_no"):
            fields["transfer_bill_no"] = str(bill["transfer_bill_no"])
        if bill.get("package_info"):
            fields["package_info"] = str(bill["package_info"])
        if w["status"] == "approved":  # first word that the bill exists
            fields["status"] = "transferring"
            events.append(_event(WithdrawalTransferCreated(
                withdrawal_id=str(w_id), promoter_id=promoter, out_bill_no=bill_no,
                transfer_bill_no=fields.get("transfer_bill_no") or w["transfer_bill_no"], state=state,
                package_info=fields.get("package_info") or w["package_info"], created_at=now), w_id, "transfer_created", bill_no, at=now))
        outcome = rules.outcome_of(state, bill.get("fail_reason"))
        if outcome.kind == "paid":
            await ledger_store.pay(conn, promoter, w["amount_fen"])
            fields.update(status="paid", finished_at=now, next_check_at=None)
            events.append(_event(WithdrawalPaid(withdrawal_id=str(w_id), promoter_id=promoter, amount_fen=w["amount_fen"],
                                                fee_fen=w["fee_fen"], out_bill_no=bill_no, paid_at=now,
                                                tax_withheld_fen=w["tax_withheld_fen"]),
                                 w_id, "paid", bill_no, at=now))
        elif outcome.kind == "released":
            await ledger_store.release(conn, promoter, w["amount_fen"])
            fields.update(status="released", finished_at=now, next_check_at=None, release_reason=outcome.reason,
                          fail_reason=bill.get("fail_reason"))
            events.append(_event(WithdrawalReleased(withdrawal_id=str(w_id), promoter_id=promoter,
                                                    amount_fen=w["amount_fen"], out_bill_no=bill_no,
                                                    reason=outcome.reason or "transfer_failed", released_at=now),
                                 w_id, "released", bill_no, at=now))
        else:
            same = w["bill_state"] == state
            checks = w["checks"] + 1 if same else 0
            wait = timing.open_bill_query_s if state == "WAIT_USER_CONFIRM" else \
                rules.next_check_delay(checks, timing.retry_base_s, timing.retry_max_s)
            fields.update(checks=checks, next_check_at=now + timedelta(seconds=wait))
        await wd.update(conn, w_id, **fields)
        await record_events(conn, PAYOUT_EVENTS, events)
    log.info("transfer_bill_applied", withdrawal_id=str(w_id), out_bill_no=bill_no, state=state, outcome=outcome.kind)
    return outcome.kind


async def release_refused(conn: asyncpg.Connection, withdrawal_id: uuid.UUID, bill_no: str, *, now: datetime) -> bool:
    """WeChat refused the create and a query confirms no bill exists: the money returns.
    Only from the state the caller saw (approved + REFUSED, same bill number)."""
    async with conn.transaction():
        w = await wd.lock(conn, withdrawal_id)
        if w is None or w["status"] != "approved" or w["bill_state"] != rules.REFUSED or w["out_bill_no"] != bill_no:
            return False
        await ledger_store.release(conn, w["promoter_id"], w["amount_fen"])
        await wd.update(conn, withdrawal_id, status="released", finished_at=now, next_check_at=None, lease_until=None,
                        release_reason="transfer_refused")
        await record_events(conn, PAYOUT_EVENTS, [_event(WithdrawalReleased(
            withdrawal_id=str(withdrawal_id), promoter_id=w["promoter_id"], amount_fen=w["amount_fen"],
            out_bill_no=bill_no, reason="transfer_refused", released_at=now), withdrawal_id, "released", bill_no, at=now)])
    log.warning("withdrawal_released_after_refusal", withdrawal_id=str(withdrawal_id), out_bill_no=bill_no,
                last_error=w["last_error"])
    return True
