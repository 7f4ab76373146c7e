"""The engagement projection: commission, payout, referral and order events -> notices (and
the subscribe messages they may use), money facts, the share funnel, honours and tier perks,
all in the projector's transaction, so replaying an event changes nothing twice."""
from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import structlog

from services.engagement.domain import honours as honour_rules
from services.engagement.domain import notices as notice_rules
from services.engagement.domain.notices import Notice
from services.engagement.domain.periods import month_from_label, period_of
from services.engagement.store import facts, honours, notices, perks, stats
from services.engagement.store.facts import Earning
from shared.contracts.commission import CommissionAccrued, CommissionReversed, CommissionSettled, PromoterTierChanged
from shared.contracts.engagement import HonourAwarded, PerkGranted
from shared.contracts.orders import OrderPaid
from shared.contracts.payout import WithdrawalPaid
from shared.contracts.referral import PromoterEnrolled, PromoterLinkVisited, PromoterShareMade, ReferralBound, ReferralTakenOver
from shared.display import mask_nickname
from shared.events import Envelope, derive_event_id, new_event
from shared.projector import Batch
from shared.topics import COMMISSION_EVENTS, ENGAGEMENT_EVENTS, ORDER_EVENTS, PAYOUT_EVENTS, REFERRAL_EVENTS

log = structlog.get_logger(__name__)
#: the cause of awards that no single event causes (ids stay the same on every replay)
_AWARD_NS = uuid.UUID("9d5c1e2a-3b4f-4e6a-8c7d-2a1b0c9d8e7f")

EVENT_TYPES = notice_rules.NOTICE_TYPES | frozenset({
    "PromoterTierChanged", "PromoterEnrolled", "ReferralBound", "ReferralTakenOver", "PromoterLinkVisited",
    "PromoterShareMade", "OrderPaid", "WithdrawalRequested"})


def record_deltas(earnings: list[Earning], new_customers: list[str]) -> dict[str, dict[str, int]]:
    """How a batch's money facts and new customers change each promoter's running record."""
    out: dict[str, dict[str, int]] = {}
    for e in earnings:
        d = out.setdefault(e.promoter_id, {})
        if e.kind == "accrued":
            d["accrued_fen"] = d.get("accrued_fen", 0) + e.amount_fen
            if e.level in ("level1", "self_purchase"):
                d["sales"] = d.get("sales", 0) + 1
        elif e.kind in ("settled", "reversed_settled"):
            d["settled_fen"] = d.get("settled_fen", 0) + (e.amount_fen if e.kind == "settled" else -e.amount_fen)
    for p in new_customers:
        d = out.setdefault(p, {})
        d["new_customers"] = d.get("new_customers", 0) + 1
    return out


class ActivityProjection:
    name = "activity"
    topics = (COMMISSION_EVENTS, PAYOUT_EVENTS, REFERRAL_EVENTS, ORDER_EVENTS)
    event_types = EVENT_TYPES

    def __init__(self, tz: str = "Asia/Shanghai", top_n_of_month: int = honour_rules.TOP_N_OF_MONTH) -> None:
        self.tz = tz
        self.top_n = top_n_of_month
        self._month_checked: str | None = None  # the latest month whose earlier months were closed

    async def apply(self, conn: asyncpg.Connection, batch: Batch) -> None:
        earnings: list[Earning] = []
        lines: list[tuple[str, str, str]] = []
        firsts: list[tuple[str, str, str, datetime]] = []
        steps: list[tuple] = []
        told: list[tuple[Envelope, Notice]] = []
        affected: dict[str, Envelope] = {}
        latest_settled: datetime | None = None
        for a in batch.events:
            p, env = a.payload, a.envelope
            n = notice_rules.notice_for(p)
            if n is not None:
                told.append((env, n))
            if isinstance(p, CommissionAccrued):
                bonus = p.kind == "management_bonus"  # not a sale of the promoter's own: no sale, no new customer
                earnings.append(Earning(env.event_id, p.beneficiary_id, "accrued", p.amount_fen, p.paid_at, p.order_id,
                                        p.line_id, p.buyer_id, "management" if bonus else p.level))
                if p.level == "level1" and p.buyer_id != p.beneficiary_id and not bonus:
                    firsts.append((p.beneficiary_id, p.buyer_id, p.order_id, p.paid_at))
                affected[p.beneficiary_id] = env
            elif isinstance(p, CommissionSettled):
                earnings.append(Earning(env.event_id, p.beneficiary_id, "settled", p.amount_fen, p.settled_at, p.order_id))
                affected[p.beneficiary_id] = env
                latest_settled = max(latest_settled or p.settled_at, p.settled_at)
            elif isinstance(p, CommissionReversed):
                earnings.append(Earning(env.event_id, p.beneficiary_id, f"reversed_{p.from_status}", p.amount_fen,
                                        p.reversed_at, p.order_id, p.line_id))
                affected[p.beneficiary_id] = env
            elif isinstance(p, WithdrawalPaid):
                earnings.append(Earning(env.event_id, p.promoter_id, "withdrawn", p.amount_fen, p.paid_at))
            elif isinstance(p, OrderPaid):
                lines += [(p.order_id, line.line_id, line.product_id) for line in p.lines]
            elif isinstance(p, PromoterEnrolled):
                # only the masked form: the full nickname is sealed with a key engagement does not hold
                await facts.set_nickname(conn, p.promoter_id, p.nickname_masked or (mask_nickname(p.nickname) if p.nickname else None))
            elif isinstance(p, (ReferralBound, ReferralTakenOver)):
                steps.append((env.event_id, p.promoter_id, "bind", p.source, p.product_id, p.customer_id, p.bound_at))
            elif isinstance(p, PromoterLinkVisited):
                steps.append((env.event_id, p.promoter_id, "visit", p.source, p.product_id, p.visitor_id, p.visited_at))
            elif isinstance(p, PromoterShareMade):
                steps.append((env.event_id, p.promoter_id, "share", p.source, p.product_id, None, p.made_at))
            elif isinstance(p, PromoterTierChanged):
                await self._tier_changed(conn, batch, env, p, told)
        await facts.add_earnings(conn, earnings)
        await facts.add_order_lines(conn, lines)
        new_customers = await facts.add_first_purchases(conn, firsts)
        await facts.add_channel_steps(conn, steps)
        if affected:
            records = await facts.add_to_records(conn, record_deltas(earnings, new_customers))
            await self._milestones(conn, batch, affected, records, told)
        if latest_settled is not None:
            await self._close_months(conn, batch, latest_settled, told)
        if told:
            await self._notify(conn, told)

    # -- perks -------------------------------------------------------------------------------
    async def _tier_changed(self, conn, batch: Batch, env: Envelope, p: PromoterTierChanged, told: list) -> None:
        await facts.set_tier(conn, p.promoter_id, p.to_tier)
        for row, perk in await perks.grant_for_tier(conn, p.promoter_id, p.to_tier, p.effective_at):
            granted = new_event(PerkGranted(promoter_id=p.promoter_id, grant_id=row["grant_id"], perk_id=row["perk_id"],
                                            tier=row["tier"], kind=perk["kind"], title=perk["title"][:64],
                                            granted_at=p.effective_at),
                                event_id=derive_event_id(env.event_id, "perk", row["perk_id"]), occurred_at=p.effective_at,
                                cause=env)
            batch.emit(ENGAGEMENT_EVENTS, granted)
            told.append((granted, Notice(p.promoter_id, "perk_granted", f"获得{p.to_tier}权益", perk["title"], None,
                                         p.effective_at, "可领取", row["grant_id"])))

    # -- honours -----------------------------------------------------------------------------
    async def _award(self, conn, batch: Batch, promoter_id: str, key: str, title: str, cause: Envelope | None,
                     at: datetime, told: list) -> None:
        if await honours.award(conn, promoter_id, key, title, cause.event_id if cause else None, at):
            self._awarded(batch, promoter_id, key, title, cause, at, told)

    def _awarded(self, batch: Batch, promoter_id: str, key: str, title: str, cause: Envelope | None, at: datetime,
                 told: list) -> None:
        """An honour awarded now: its event and its notice."""
        evt = new_event(HonourAwarded(promoter_id=promoter_id, honour_key=key, title=title[:64],
                                      source_event_id=str(cause.event_id) if cause else None, awarded_at=at),
                        event_id=derive_event_id(_AWARD_NS, promoter_id, key), occurred_at=at, cause=cause)
        batch.emit(ENGAGEMENT_EVENTS, evt)
        told.append((evt, Notice(promoter_id, "honour_awarded", f"获得荣誉：{title}", "恭喜！已展示在你的主页", None, at,
                                 "已获得", key)))
        log.info("honour_awarded", promoter_id=promoter_id, honour_key=key)

    async def _milestones(self, conn, batch: Batch, affected: dict[str, Envelope], recs: dict[str, dict[str, int]],
                          told: list) -> None:
        """Milestones the batch's records reached, awarded in one statement (at the start of a sale,
        hundreds of promoters make their first sale in one batch)."""
        ids = sorted(affected)
        held = await honours.held(conn, ids)
        milestones = list(honour_rules.BUILT_IN) + await honours.operator_milestones(conn)
        due = []
        for pid in ids:
            record = honour_rules.Record(**recs[pid])
            for m in honour_rules.due(record, milestones, held[pid]):
                cause = affected[pid]
                due.append((pid, m.key, m.title, cause))
        if not due:
            return
        awarded = await honours.award_many(conn, [(pid, key, title, cause.event_id, cause.occurred_at)
                                                  for pid, key, title, cause in due])
        for pid, key, title, cause in due:
            if (pid, key) in awarded:
                self._awarded(batch, pid, key, title, cause, cause.occurred_at, told)

    async def _close_months(self, conn, batch: Batch, latest: datetime, told: list) -> None:
        """A settlement in a later month closes the months before it: their top N by settled
        commission are awarded (once; a settlement of a closed month arriving late changes no award)."""
        month = period_of("month", latest, self.tz)
        if self._month_checked == month.label:
            return
        todo = await honours.open_months_before(conn, month.start, self.tz)
        if not todo:
            # remembered only when nothing was left to close: a batch that closed months and then
            # failed to commit is retried, and must find them open again
            self._month_checked = month.label
        for label in todo:
            if not await honours.close_month(conn, label):
                continue
            m = month_from_label(label, self.tz)
            for r in await stats.board(conn, "settled", m.start, m.end, self.top_n, None):
                if r["rank"] <= self.top_n:
                    await self._award(conn, batch, r["promoter_id"], honour_rules.top_of_month_key(label),
                                      honour_rules.top_of_month_title(label), None, m.end, told)

    # -- notices -----------------------------------------------------------------------------
    async def _notify(self, conn, told: list[tuple[Envelope, Notice]]) -> None:
        """The batch's notices in one statement; then a subscribe message for each new notice
        whose kind has an enabled template, for promoters with a subscription left (asked in one
        statement; only those use one, a statement each)."""
        templates = await notices.templates(conn)
        ids = await notices.add_notices(conn, [(env.event_id, n) for env, n in told])
        sendable = []
        for (env, n), notice_id in zip(told, ids):
            t = templates.get(n.kind)
            if notice_id is not None and t is not None and t["enabled"]:
                sendable.append((env, n, notice_id, t))
        if not sendable:
            return
        left = await notices.with_subscriptions_left(conn, sorted({(n.promoter_id, t["template_id"]) for _, n, _, t in sendable}))
        for env, n, notice_id, t in sendable:
            if (n.promoter_id, t["template_id"]) not in left:
                continue
            openid = await notices.use_subscription(conn, n.promoter_id, t["template_id"])
            if openid is None:
                continue  # no unused one-time subscription: WeChat would refuse (43101)
            data = notice_rules.render_data(notices.fields_of(t), n, self.tz)
            await notices.add_send(conn, env.event_id, n.promoter_id, notice_id, t["template_id"], openid, t["page"], data)
