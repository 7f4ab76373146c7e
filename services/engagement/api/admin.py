"""Operator routes: subscribe-message templates, honour milestones, announcements and
training material, tier perks. Each change that promoters see is an event."""
from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query

from services.engagement.api.deps import ConnDep, RuntimeDep, utcnow
from services.engagement.api.schemas import (
    AnnouncementCreate, AnnouncementPublic, AnnouncementStats, HonourRuleCreate, PerkCreate, TemplatePublic, TemplatePut,
)
from services.engagement.domain import notices as notice_rules
from services.engagement.domain.errors import EngagementError, PerkNotFoundError, UnknownNoticeKindError
from services.engagement.store import announcements, honours, notices, perks
from shared.contracts.engagement import AnnouncementPublished, PerkGranted
from shared.events import new_event
from shared.identity import OperatorIdentity, StaffIdentity
from shared.outbox import record_events
from shared.topics import ENGAGEMENT_EVENTS

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class AlreadyDefinedError(EngagementError):
    status = 409


@router.put("/notice-templates/{kind}", response_model=TemplatePublic)
async def put_template(kind: str, body: TemplatePut, identity: OperatorIdentity, conn: ConnDep) -> TemplatePublic:
    """The subscribe-message template for a notice kind (commission_accrued, commission_settled,
    commission_reversed, withdrawal_changed, honour_awarded, perk_granted) and what each of its
    fields shows. A mapping WeChat would refuse (a thing field showing an amount...) is refused here."""
    if kind not in notice_rules.NOTICE_KINDS:
        raise UnknownNoticeKindError(f"unknown notice kind {kind!r} (one of {', '.join(notice_rules.NOTICE_KINDS)})")
    notice_rules.check_fields(body.fields)
    await notices.put_template(conn, kind, body.template_id, body.page, dict(body.fields), body.enabled, identity.user_id)
    row = (await notices.templates(conn))[kind]
    return TemplatePublic(**{**dict(row), "fields": notices.fields_of(row)})


@router.get("/notice-templates", response_model=list[TemplatePublic])
async def list_templates(identity: StaffIdentity, conn: ConnDep) -> list[TemplatePublic]:
    return [TemplatePublic(**{**dict(r), "fields": notices.fields_of(r)}) for r in (await notices.templates(conn)).values()]


@router.post("/honour-rules", status_code=201, response_model=HonourRuleCreate)
async def add_honour_rule(body: HonourRuleCreate, identity: OperatorIdentity, conn: ConnDep) -> HonourRuleCreate:
    """A milestone over the promoter's own record (sales, accrued_fen, settled_fen,
    new_customers >= threshold), awarded once from the promoter's next event on."""
    if not await honours.add_rule(conn, body.rule_id, body.title, body.metric, body.threshold, identity.user_id):
        raise AlreadyDefinedError(f"honour rule {body.rule_id} exists")
    return body


@router.get("/honour-rules", response_model=list[HonourRuleCreate])
async def list_honour_rules(identity: StaffIdentity, conn: ConnDep) -> list[HonourRuleCreate]:
    return [HonourRuleCreate(rule_id=r["rule_id"], title=r["title"], metric=r["metric"], threshold=r["threshold"])
            for r in await honours.rules(conn)]


@router.post("/announcements", status_code=201, response_model=AnnouncementPublic)
async def publish(body: AnnouncementCreate, identity: OperatorIdentity, rt: RuntimeDep) -> AnnouncementPublic:
    """Publish an announcement or training material to every promoter (AnnouncementPublished)."""
    aid, now = uuid.uuid4(), utcnow()
    async with rt.pool.acquire() as conn, conn.transaction():
        await announcements.publish(conn, aid, body.kind, body.title, body.body, body.url, identity.user_id, now)
        evt = AnnouncementPublished(announcement_id=str(aid), kind=body.kind, title=body.title,
                                    published_by=identity.user_id, published_at=now)
        await record_events(conn, ENGAGEMENT_EVENTS, [new_event(evt, occurred_at=now)])
    rt.relay.kick()
    return AnnouncementPublic(announcement_id=str(aid), kind=body.kind, title=body.title, body=body.body, url=body.url,
                              published_at=now)


@router.get("/announcements", response_model=list[AnnouncementStats])
async def announcement_reads(identity: StaffIdentity, conn: ConnDep,
                             limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[AnnouncementStats]:
    """Announcements with how many promoters read each."""
    return [AnnouncementStats(**{**dict(r), "announcement_id": str(r["announcement_id"])})
            for r in await announcements.with_reads(conn, limit)]


@router.post("/perks", status_code=201, response_model=PerkCreate)
async def define_perk(body: PerkCreate, identity: OperatorIdentity, rt: RuntimeDep) -> PerkCreate:
    """A perk of a tier (a new-product trial, a holiday gift pack, a coupon). Promoters already
    at the tier are granted it now; others when they reach it (PerkGranted each time)."""
    now = utcnow()
    async with rt.pool.acquire() as conn, conn.transaction():
        if not await perks.define(conn, body.perk_id, body.tier, body.kind, body.title, body.description, identity.user_id):
            raise AlreadyDefinedError(f"perk {body.perk_id} exists")
        events = []
        for pid in await perks.promoters_at_tier(conn, body.tier):
            for row, p in await perks.grant_for_tier(conn, pid, body.tier, now):
                events.append(new_event(PerkGranted(promoter_id=pid, grant_id=row["grant_id"], perk_id=row["perk_id"],
                                                    tier=body.tier, kind=body.kind, title=body.title, granted_at=now),
                                        occurred_at=now))
        await record_events(conn, ENGAGEMENT_EVENTS, events)
    rt.relay.kick()
    return body


@router.post("/perks/{perk_id}/active", response_model=dict)
async def set_perk_active(identity: OperatorIdentity, conn: ConnDep, active: bool,
                          perk_id: str = Path(min_length=1, max_length=64)) -> dict:
    """Stop (or resume) granting a perk; grants already made stay claimable."""
    if not await perks.set_active(conn, perk_id, active):
        raise PerkNotFoundError("no such perk")
    return {"perk_id": perk_id, "active": active}


@router.get("/perks", response_model=list[PerkCreate])
async def list_perks(identity: StaffIdentity, conn: ConnDep) -> list[PerkCreate]:
    return [PerkCreate(perk_id=r["perk_id"], tier=r["tier"], kind=r["kind"], title=r["title"], description=r["description"])
            for r in await perks.all_perks(conn)]
