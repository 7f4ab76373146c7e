"""Explain any fen (read-only): for an order or one commission record, what produced each fen.

- the chain in force at the payment instant (the bindings and statuses this service had copied,
  each with the event that set it);
- the plan version in force, the tier, the rate and the arithmetic of every accrual;
- the events behind it (OrderPaid -> CommissionAccrued/Skipped -> Reversed -> Settled), with ids
  and causation links;
- reversals and settlement.

Also the plan editor's helpers: check a plan without publishing it, and the history of versions."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel

from services.commission.api.deps import PoolDep, SnapshotConnDep
from services.commission.domain.errors import CommissionError
from services.commission.domain.explain import arithmetic
from services.commission.domain.plan import HARD_CAP_BP, Plan, parse_plan
from services.commission.store import explain as store
from shared.identity import StaffIdentity
from shared.topics import COMMISSION_EVENTS, ORDER_EVENTS, REFERRAL_EVENTS

router = APIRouter(prefix="/v1/admin", tags=["explain"])


class NotExplainableError(CommissionError):
    code = "order_not_seen"
    status = 404


class EventRef(BaseModel):
    event_id: str
    event_type: str
    topic: str
    occurred_at: datetime | None = None
    #: the event that caused this one (links the chain of events)
    causation_id: str | None = None
    published: bool | None = None
    summary: str | None = None


class ChainLink(BaseModel):
    level: int  # 1: the buyer's referrer; 2: that referrer's referrer
    customer_id: str
    promoter_id: str
    bound_at: datetime
    until: datetime | None = None
    binding_event_id: str
    promoter_status_at_payment: str | None = None
    status_event_id: str | None = None


class PlanInForce(BaseModel):
    plan_version: int
    published_at: datetime
    published_by: str
    event_id: str
    cap_bp: int
    freeze_days: int
    levels: int
    plan: dict[str, Any]


class ArithmeticPublic(BaseModel):
    mode: str
    formula: str
    computed_fen: int
    amount_fen: int
    line_cap_fen: int
    lowered_by_cap_guard: bool


class Reversal(BaseModel):
    event_id: str
    out_refund_no: str
    amount_fen: int
    from_status: str
    reversed_at: datetime


class Settlement(BaseModel):
    event_id: str | None
    amount_fen: int
    settled_at: datetime


class AccrualExplained(BaseModel):
    accrual_id: str
    line_id: str
    level: str
    beneficiary_id: str
    product_id: str
    tier: str
    plan_version: int
    base_fen: int
    quantity: int
    rate_bp: int | None
    fixed_fen_per_unit: int | None
    amount_fen: int
    arithmetic: ArithmeticPublic
    event_id: str
    caused_by: str | None
    reversals: list[Reversal]
    reversed_fen: int
    settlement: Settlement | None
    due_at: datetime | None
    status: str  # frozen | settled | reversed
    net_fen: int


class Skip(BaseModel):
    line_id: str | None
    beneficiary_id: str
    level: str
    reason: str


class Totals(BaseModel):
    accrued_fen: int
    reversed_fen: int
    settled_fen: int
    net_fen: int


class Explanation(BaseModel):
    order_id: str
    buyer_id: str
    paid_at: datetime
    focus_accrual_id: str | None = None
    buyer_status_at_payment: str | None
    self_purchase: bool
    chain: list[ChainLink]
    plan: PlanInForce | None
    accruals: list[AccrualExplained]
    skips: list[Skip]
    totals: Totals
    events: list[EventRef]


class PlanCheck(BaseModel):
    ok: bool
    hard_cap_bp: int
    plan: dict[str, Any]
    #: per tier: the worst case of one line, bp (max(level1, self) + level2)
    worst_case_bp: dict[str, int]


class PlanVersion(BaseModel):
    plan_version: int
    published_by: str
    published_at: datetime
    event_id: str
    plan: dict[str, Any]


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str) else v


async def explain_order(conn, order_id: str, focus: str | None = None) -> Explanation:
    # `conn` holds one read-only snapshot (SnapshotConnDep): the accrual rows and the outbox are read
    # by separate statements, and a settlement committed between them would show "frozen" beside it
    order = await store.paid_order(conn, order_id)
    if order is None:
        raise NotExplainableError(f"no paid order {order_id} has reached the commission service")
    buyer, paid_at = order["buyer_id"], order["paid_at"]
    events: dict[str, EventRef] = {}

    def ref(e: EventRef) -> None:
        events.setdefault(e.event_id, e)

    buyer_status = await store.status_at(conn, buyer, paid_at)
    if buyer_status:
        ref(EventRef(event_id=str(buyer_status["event_id"]), event_type="PromoterEnrolled/StatusChanged", topic=REFERRAL_EVENTS,
                     occurred_at=buyer_status["changed_at"], summary=f"{buyer}: {buyer_status['status']}"))
    chain: list[ChainLink] = []
    who = buyer
    for level in (1, 2):
        b = await store.binding_at(conn, who, paid_at)
        if b is None:
            break
        st = await store.status_at(conn, b["promoter_id"], paid_at)
        chain.append(ChainLink(level=level, customer_id=who, promoter_id=b["promoter_id"], bound_at=b["bound_at"],
                               until=b["until"], binding_event_id=str(b["event_id"]),
                               promoter_status_at_payment=st["status"] if st else None,
                               status_event_id=str(st["event_id"]) if st else None))
        ref(EventRef(event_id=str(b["event_id"]), event_type="ReferralBound/TakenOver", topic=REFERRAL_EVENTS,
                     occurred_at=b["bound_at"], summary=f"{who} → {b['promoter_id']}"))
        if st:
            ref(EventRef(event_id=str(st["event_id"]), event_type="PromoterEnrolled/StatusChanged", topic=REFERRAL_EVENTS,
                         occurred_at=st["changed_at"], summary=f"{b['promoter_id']}: {st['status']}"))
        who = b["promoter_id"]

    rows = await store.accruals(conn, order_id)
    version = rows[0]["plan_version"] if rows else None
    p = await (store.plan_version(conn, version) if version is not None else store.plan_in_force(conn, paid_at))
    plan_out = None
    cap_bp = HARD_CAP_BP
    if p is not None:
        plan = Plan.model_validate(_json(p["plan"]))
        cap_bp = plan.cap_bp
        plan_out = PlanInForce(plan_version=p["plan_version"], published_at=p["published_at"], published_by=p["published_by"],
                               event_id=str(p["event_id"]), cap_bp=plan.cap_bp, freeze_days=plan.freeze_days,
                               levels=plan.levels, plan=_json(p["plan"]))
        ref(EventRef(event_id=str(p["event_id"]), event_type="CommissionPlanPublished", topic=COMMISSION_EVENTS,
                     occurred_at=p["published_at"], summary=f"v{p['plan_version']}"))

    keys = sorted({buyer, *(r["beneficiary_id"] for r in rows), *(c.promoter_id for c in chain)})
    own = await store.own_events(conn, COMMISSION_EVENTS, keys, order_id)
    order_paid_id: str | None = None
    reversals: dict[str, list[Reversal]] = {}
    settlements: dict[str, Settlement] = {}
    for env in own:
        pl, et = env["payload"], env["event_type"]
        if et in ("CommissionAccrued", "CommissionAccrualSkipped") and env.get("causation_id"):
            order_paid_id = order_paid_id or env["causation_id"]
        if et == "CommissionReversed":
            reversals.setdefault(pl["accrual_id"], []).append(Reversal(
                event_id=env["event_id"], out_refund_no=pl["out_refund_no"], amount_fen=pl["amount_fen"],
                from_status=pl["from_status"], reversed_at=pl["reversed_at"]))
        if et == "CommissionSettled":
            settlements[pl["accrual_id"]] = Settlement(event_id=env["event_id"], amount_fen=pl["amount_fen"],
                                                       settled_at=pl["settled_at"])
        summary = {"CommissionAccrued": lambda: f"{pl['accrual_id']}: {pl['amount_fen']} 分",
                   "CommissionAccrualSkipped": lambda: f"{pl['beneficiary_id']} {pl['level']}: {pl['reason']}",
                   "CommissionReversed": lambda: f"{pl['accrual_id']}: -{pl['amount_fen']} 分 ({pl['out_refund_no']})",
                   "CommissionSettled": lambda: f"{pl['accrual_id']}: {pl['amount_fen']} 分"}.get(et, lambda: None)()
        ref(EventRef(event_id=env["event_id"], event_type=et, topic=COMMISSION_EVENTS, occurred_at=env.get("occurred_at"),
                     causation_id=env.get("causation_id"), published=env["published"], summary=summary))
    if order_paid_id:
        ref(EventRef(event_id=order_paid_id, event_type="OrderPaid", topic=ORDER_EVENTS, occurred_at=paid_at,
                     summary=f"{order_id} ({buyer})"))
    # the order events behind reversals and settlements (their ids are the causes we recorded)
    causes = {"CommissionReversed": ("OrderRefunded", lambda pl: pl["out_refund_no"]),
              "CommissionSettled": ("OrderCompleted", lambda pl: order_id)}
    for env in own:
        cause = env.get("causation_id")
        if cause and env["event_type"] in causes and cause not in events:
            kind, what = causes[env["event_type"]]
            ref(EventRef(event_id=cause, event_type=kind, topic=ORDER_EVENTS, summary=what(env["payload"])))

    accruals = []
    for r in rows:
        ar = arithmetic(r["base_fen"], r["quantity"], r["rate_bp"], r["fixed_fen_per_unit"], r["amount_fen"], cap_bp)
        settlement = settlements.get(r["accrual_id"])
        if settlement is None and r["settled_at"] is not None:  # settled, event not in this outbox (restored schema)
            settlement = Settlement(event_id=None, amount_fen=r["settled_fen"] or 0, settled_at=r["settled_at"])
        status = "reversed" if r["reversed_fen"] >= r["amount_fen"] else ("settled" if r["settled_at"] else "frozen")
        accruals.append(AccrualExplained(
            accrual_id=r["accrual_id"], line_id=r["line_id"], level=r["level"], beneficiary_id=r["beneficiary_id"],
            product_id=r["product_id"], tier=r["tier"], plan_version=r["plan_version"], base_fen=r["base_fen"],
            quantity=r["quantity"], rate_bp=r["rate_bp"], fixed_fen_per_unit=r["fixed_fen_per_unit"],
            amount_fen=r["amount_fen"], arithmetic=ArithmeticPublic(**ar.__dict__), event_id=str(r["event_id"]),
            caused_by=order_paid_id, reversals=reversals.get(r["accrual_id"], []), reversed_fen=r["reversed_fen"],
            settlement=settlement, due_at=r["due_at"], status=status, net_fen=r["amount_fen"] - r["reversed_fen"]))
    skips = [Skip(line_id=s["line_id"], beneficiary_id=s["beneficiary_id"], level=s["level"], reason=s["reason"])
             for s in await store.skips(conn, order_id)]
    totals = Totals(accrued_fen=sum(a.amount_fen for a in accruals), reversed_fen=sum(a.reversed_fen for a in accruals),
                    settled_fen=sum(a.settlement.amount_fen for a in accruals if a.settlement),
                    net_fen=sum(a.net_fen for a in accruals))
    ordered = sorted(events.values(), key=lambda e: e.occurred_at or datetime.max.replace(tzinfo=paid_at.tzinfo))
    return Explanation(order_id=order_id, buyer_id=buyer, paid_at=paid_at, focus_accrual_id=focus,
                       buyer_status_at_payment=buyer_status["status"] if buyer_status else None,
                       self_purchase=any(a.level == "self_purchase" for a in accruals), chain=chain, plan=plan_out,
                       accruals=accruals, skips=skips, totals=totals, events=ordered)


@router.get("/explain/orders/{order_id}", response_model=Explanation)
async def explain_an_order(_: StaffIdentity, conn: SnapshotConnDep,
                           order_id: str = Path(min_length=1, max_length=128)) -> Explanation:
    """Every fen of one paid order: chain, plan, tier, rate, arithmetic, events, reversals, settlement."""
    return await explain_order(conn, order_id)


@router.get("/explain/commissions/{accrual_id}", response_model=Explanation)
async def explain_a_commission(_: StaffIdentity, conn: SnapshotConnDep,
                               accrual_id: str = Path(min_length=1, max_length=300)) -> Explanation:
    """One commission record (`order_id:line_id:level`), explained with its whole order; `focus_accrual_id` names it."""
    order_id = await store.order_of_accrual(conn, accrual_id)
    if order_id is None:
        raise NotExplainableError(f"no commission record {accrual_id}", code="commission_not_found")
    return await explain_order(conn, order_id, focus=accrual_id)


@router.post("/plan/check", response_model=PlanCheck)
async def check_plan(_: StaffIdentity, body: dict[str, Any] = Body(...)) -> PlanCheck:
    """Validate a plan exactly as publishing would, without publishing it: 200 with the normalised
    plan, or the same 422 `{code, message}` the publication would answer."""
    plan = parse_plan(body)
    worst = {t.name: max(t.level1_bp, t.self_purchase_bp) + (t.level2_bp if plan.levels == 2 else 0) for t in plan.tiers}
    return PlanCheck(ok=True, hard_cap_bp=HARD_CAP_BP, plan=json.loads(plan.model_dump_json()), worst_case_bp=worst)


@router.get("/plans", response_model=list[PlanVersion])
async def plan_history(_: StaffIdentity, pool: PoolDep, limit: int = Query(50, ge=1, le=500)) -> list[PlanVersion]:
    """Published plan versions, newest first."""
    async with pool.acquire() as conn:
        rows = await store.plans(conn, limit)
    return [PlanVersion(plan_version=r["plan_version"], published_by=r["published_by"], published_at=r["published_at"],
                        event_id=str(r["event_id"]), plan=_json(r["plan"])) for r in rows]
