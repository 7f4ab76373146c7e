"""The earnings dashboard and the leaderboards (Asia/Shanghai periods)."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from services.engagement.api.deps import ConnDep, SettingsDep, may_read, utcnow
from services.engagement.api.schemas import (
    Balance, BoardRow, Dashboard, DaySums, Funnel, Leaderboard, PeriodSums, ProductEarning,
)
from shared.db import read_only_snapshot
from shared.display import mask_nickname
from services.engagement.domain.errors import BadPeriodError
from services.engagement.domain.periods import period_of
from services.engagement.store import stats
from shared.identity import CurrentIdentity

router = APIRouter(prefix="/v1", tags=["dashboard"])


def _sums(r) -> dict:
    return dict(accrued_fen=r["accrued_fen"], settled_fen=r["settled_fen"],
                reversed_fen=r["reversed_frozen_fen"] + r["reversed_settled_fen"], withdrawn_fen=r["withdrawn_fen"])


async def dashboard_of(conn, promoter_id: str, tz: str, now: datetime, days: int) -> Dashboard:
    # one snapshot for every figure: read statement by statement, events committed in between made
    # the periods disagree with the balance in the same answer
    async with read_only_snapshot(conn):
        return await _dashboard_of(conn, promoter_id, tz, now, days)


async def _dashboard_of(conn, promoter_id: str, tz: str, now: datetime, days: int) -> Dashboard:
    periods = []
    for kind in ("day", "week", "month"):
        p = period_of(kind, now, tz)  # type: ignore[arg-type]
        periods.append(PeriodSums(period={"day": "today"}.get(kind, kind), label=p.label, start=p.start, end=p.end,
                                  **_sums(await stats.sums(conn, promoter_id, p.start, p.end))))
    total = await stats.sums(conn, promoter_id, None, None)
    first = await conn.fetchval("SELECT min(at) FROM earnings WHERE promoter_id = $1", promoter_id)
    periods.append(PeriodSums(period="all", label="all", start=first or now, end=None, **_sums(total)))
    balance = Balance(
        frozen_fen=total["accrued_fen"] - total["settled_fen"] - total["reversed_frozen_fen"],
        settled_fen=total["settled_fen"] - total["reversed_settled_fen"],
        withdrawn_fen=total["withdrawn_fen"],
        reversed_fen=total["reversed_frozen_fen"] + total["reversed_settled_fen"])
    today = period_of("day", now, tz)
    start = today.start - timedelta(days=days - 1)
    by_day = [DaySums(day=r["day"], **_sums(r)) for r in await stats.by_day(conn, promoter_id, start, today.end, tz)]
    top = [ProductEarning(**dict(r)) for r in await stats.top_products(conn, promoter_id, 10)]
    funnel = [Funnel(source=r["source"], product_id=r["product"] or None, shares=r["shares"], visits=r["visits"],
                     binds=r["binds"], paid_orders=r["paid_orders"]) for r in await stats.funnel(conn, promoter_id)]
    return Dashboard(promoter_id=promoter_id, timezone=tz, balance=balance, periods=periods, by_day=by_day,
                     top_products=top, funnel=funnel)


@router.get("/me/dashboard", response_model=Dashboard)
async def my_dashboard(identity: CurrentIdentity, conn: ConnDep, settings: SettingsDep,
                       days: Annotated[int, Query(ge=1, le=366)] = 30) -> Dashboard:
    """Today / this week / this month / all time (Asia/Shanghai), frozen vs settled vs withdrawn
    vs reversed, the last `days` days for a chart, top products, and each share channel's
    conversion: shares -> visits -> binds -> paid orders."""
    return await dashboard_of(conn, identity.user_id, settings.business_timezone, utcnow(), days)


@router.get("/promoters/{promoter_id}/dashboard", response_model=Dashboard, responses={403: {"description": "another promoter's"}})
async def dashboard(identity: CurrentIdentity, conn: ConnDep, settings: SettingsDep,
                    promoter_id: str = Path(min_length=1, max_length=128),
                    days: Annotated[int, Query(ge=1, le=366)] = 30) -> Dashboard:
    """A promoter's dashboard: their own, or anyone's for an operator."""
    may_read(identity, promoter_id)
    return await dashboard_of(conn, promoter_id, settings.business_timezone, utcnow(), days)


@router.get("/leaderboards/{period}", response_model=Leaderboard)
async def leaderboard(identity: CurrentIdentity, conn: ConnDep, settings: SettingsDep,
                      period: Literal["week", "month"],
                      metric: Literal["settled", "new_customers"] = "settled",
                      at: datetime | None = Query(None, description="any instant in the period (ISO 8601 with offset); default now"),
                      top: Annotated[int | None, Query(ge=1, le=100)] = None) -> Leaderboard:
    """The week's (Monday 00:00 Asia/Shanghai) or month's board by settled commission or by new
    customers who bought; the caller's own rank even outside the top. Names are masked."""
    if at is not None and at.tzinfo is None:
        raise BadPeriodError("`at` must carry its UTC offset")
    p = period_of(period, at or utcnow(), settings.business_timezone)
    n = top or settings.leaderboard_top
    async with read_only_snapshot(conn):  # ranks and count of one snapshot
        rows = await stats.board(conn, metric, p.start, p.end, n, identity.user_id)
        participants = await stats.participants(conn, metric, p.start, p.end)
    me = identity.user_id

    def row(r) -> BoardRow:
        return BoardRow(rank=r["rank"], nickname=mask_nickname(r["nickname"]), score=r["score"], me=r["promoter_id"] == me)
    top_rows = [row(r) for r in rows if r["rank"] <= n]
    mine = next((row(r) for r in rows if r["promoter_id"] == me), None)
    return Leaderboard(period=period, metric=metric, label=p.label, start=p.start, end=p.end,
                       participants=participants, top=top_rows, mine=mine)
