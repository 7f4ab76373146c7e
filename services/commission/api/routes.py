"""Routers: promoters (own balance and records), operators (plan: plan_admin publishes, any operator
role reads it and any balance), estimates."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Body, Query, Request, status

from services.commission.api.deps import ClockDep, PoolDep
from services.commission.api.schemas import (
    BalancePublic, CommissionPage, CommissionPublic, EstimateLinePublic, EstimatePublic, EstimateRequest, PlanPublic,
)
from services.commission.domain.accrual import PaidLine, estimate
from services.commission.domain.errors import BadCursorError, NoPlanError
from services.commission.domain.plan import HARD_CAP_BP, Plan, parse_plan
from services.commission.store import queries
from services.commission.store import state as store
from shared.contracts.commission import CommissionPlanPublished
from shared.events import new_event
from shared.identity import CurrentIdentity, PlanAdminIdentity, StaffIdentity
from shared.outbox import record_events
from shared.topics import COMMISSION_EVENTS

promoters = APIRouter(prefix="/v1/promoters", tags=["promoters"])
admin = APIRouter(prefix="/v1/admin", tags=["admin"])
estimates = APIRouter(prefix="/v1", tags=["estimate"])


async def _balance(pool, promoter_id: str) -> BalancePublic:
    async with pool.acquire() as conn:
        return BalancePublic(promoter_id=promoter_id, **await queries.balance(conn, promoter_id))


@promoters.get("/me/balance", response_model=BalancePublic)
async def my_balance(identity: CurrentIdentity, pool: PoolDep) -> BalancePublic:
    return await _balance(pool, identity.user_id)


def _cursor(paid_at: datetime, accrual_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([paid_at.isoformat(), accrual_id]).encode()).decode()


def _uncursor(text: str) -> tuple[datetime, str]:
    try:
        at, aid = json.loads(base64.urlsafe_b64decode(text.encode()))
        return datetime.fromisoformat(at), str(aid)
    except Exception as exc:
        raise BadCursorError("cursor is not one this API returned") from exc


@promoters.get("/me/commissions", response_model=CommissionPage)
async def my_commissions(
    identity: CurrentIdentity, pool: PoolDep,
    status_: Literal["frozen", "settled", "reversed"] | None = Query(None, alias="status"),
    order_id: str | None = None,
    from_: datetime | None = Query(None, alias="from", description="paid at or after"),
    to: datetime | None = Query(None, description="paid before"),
    limit: int = Query(50, ge=1, le=200),
    cursor: str | None = None,
) -> CommissionPage:
    after = _uncursor(cursor) if cursor else None
    async with pool.acquire() as conn:
        rows = await queries.commissions(conn, identity.user_id, status=status_, order_id=order_id, paid_from=from_,
                                         paid_to=to, limit=limit + 1, after=after)
    items = []
    for r in rows[:limit]:
        st = "reversed" if r["reversed_fen"] >= r["amount_fen"] else ("settled" if r["settled_at"] else "frozen")
        items.append(CommissionPublic(**dict(r), net_fen=r["amount_fen"] - r["reversed_fen"], status=st))
    nxt = _cursor(rows[limit - 1]["paid_at"], rows[limit - 1]["accrual_id"]) if len(rows) > limit else None
    return CommissionPage(items=items, next_cursor=nxt)


@admin.get("/promoters/{promoter_id}/balance", response_model=BalancePublic)
async def promoter_balance(promoter_id: str, _: StaffIdentity, pool: PoolDep) -> BalancePublic:
    return await _balance(pool, promoter_id)


@admin.put("/plan", response_model=PlanPublic, status_code=status.HTTP_201_CREATED)
async def publish_plan(request: Request, identity: PlanAdminIdentity, pool: PoolDep, clock: ClockDep,
                       body: dict[str, Any] = Body(...)) -> PlanPublic:
    """Validate and publish a new plan version (CommissionPlanPublished through the outbox, in the
    transaction that stores it). It is in force for orders paid from `published_at` on."""
    plan = parse_plan(body)
    data = json.loads(plan.model_dump_json())
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.plan'))")
        last = await queries.latest_plan_version(conn)
        version = (last[0] if last else 0) + 1
        published_at = clock()
        if last and published_at <= last[1]:
            published_at = last[1] + timedelta(microseconds=1)  # versions stay in time order
        env = new_event(CommissionPlanPublished(plan_version=version, plan=data, published_by=identity.user_id,
                                                published_at=published_at), occurred_at=published_at)
        await store.insert_plan(conn, version, data, identity.user_id, published_at, env.event_id)
        await record_events(conn, COMMISSION_EVENTS, [env])
    request.app.state.runtime.relay.kick()
    return PlanPublic(plan_version=version, published_by=identity.user_id, published_at=published_at, plan=data,
                      hard_cap_bp=HARD_CAP_BP)


@admin.get("/plan", response_model=PlanPublic)
async def current_plan(_: StaffIdentity, pool: PoolDep) -> PlanPublic:
    async with pool.acquire() as conn:
        r = await store.latest_plan(conn)
    if r is None:
        raise NoPlanError("no commission plan has been published yet")
    return PlanPublic(plan_version=r["plan_version"], published_by=r["published_by"], published_at=r["published_at"],
                      plan=json.loads(r["plan"]), hard_cap_bp=HARD_CAP_BP)


@estimates.post("/estimate", response_model=EstimatePublic)
async def estimate_commission(body: EstimateRequest, identity: CurrentIdentity, pool: PoolDep) -> EstimatePublic:
    """"Share and earn ¥x": what the caller would earn at their current tier under the current plan."""
    async with pool.acquire() as conn:
        r = await store.latest_plan(conn)
        if r is None:
            raise NoPlanError("no commission plan has been published yet")
        tier = await queries.current_tier(conn, identity.user_id)
        pstatus = await queries.promoter_status(conn, identity.user_id)
    plan = Plan.model_validate(json.loads(r["plan"]))
    lines = [PaidLine(l.line_id or str(i), l.product_id, l.category_id, l.quantity, l.paid_fen)
             for i, l in enumerate(body.lines)]
    rows = estimate(plan, tier, lines)
    out = [EstimateLinePublic(line_id=l.line_id, product_id=l.product_id, share_earn_fen=row["level1"],
                              self_purchase_fen=row["self_purchase"]) for l, row in zip(body.lines, rows)]
    return EstimatePublic(promoter_id=identity.user_id, promoter_status=pstatus, plan_version=r["plan_version"],
                          tier=plan.tier(tier).name, share_earn_fen=sum(x.share_earn_fen for x in out),
                          self_purchase_fen=sum(x.self_purchase_fen for x in out), lines=out)
