"""The promoter's profile (honours), announcements with read tracking, and tier perks."""
from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Response

from services.engagement.api.deps import ConnDep, RuntimeDep, utcnow
from services.engagement.api.schemas import AnnouncementPublic, HonourPublic, PerkClaim, PerkGrantPublic, Profile
from services.engagement.domain import perks as perk_rules
from services.engagement.domain.errors import AnnouncementNotFoundError, IdempotencyKeyRequiredError, PerkNotFoundError
from services.engagement.store import announcements, honours, perks
from shared.contracts.engagement import PerkClaimed
from shared.events import new_event
from shared.identity import CurrentIdentity
from shared.outbox import record_events
from shared.topics import ENGAGEMENT_EVENTS

router = APIRouter(prefix="/v1", tags=["profile"])


async def profile_of(conn, promoter_id: str) -> Profile:
    p = await conn.fetchrow("SELECT nickname, tier FROM promoters WHERE promoter_id = $1", promoter_id)
    return Profile(promoter_id=promoter_id, nickname=(p["nickname"] if p and p["nickname"] else "推广员"),
                   tier=p["tier"] if p else None,
                   honours=[HonourPublic(**dict(r)) for r in await honours.of_promoter(conn, promoter_id)])


@router.get("/me/profile", response_model=Profile)
async def my_profile(identity: CurrentIdentity, conn: ConnDep) -> Profile:
    """The promoter's own profile with the honours they were awarded."""
    return await profile_of(conn, identity.user_id)


@router.get("/promoters/{promoter_id}/honours", response_model=list[HonourPublic])
async def promoter_honours(identity: CurrentIdentity, conn: ConnDep, promoter_id: str = Path(min_length=1, max_length=128)):
    """Another promoter's honours as shown on a board (no other data of theirs)."""
    return [HonourPublic(**dict(r)) for r in await honours.of_promoter(conn, promoter_id)]


@router.get("/announcements", response_model=list[AnnouncementPublic], tags=["announcements"])
async def list_announcements(identity: CurrentIdentity, conn: ConnDep,
                             kind: Literal["announcement", "training"] | None = None,
                             limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[AnnouncementPublic]:
    """Announcements and training material, newest first, with when the caller read each."""
    rows = await announcements.for_promoter(conn, identity.user_id, kind, limit)
    return [AnnouncementPublic(**{**dict(r), "announcement_id": str(r["announcement_id"])}) for r in rows]


@router.post("/announcements/{announcement_id}/read", status_code=204, tags=["announcements"])
async def read_announcement(announcement_id: uuid.UUID, identity: CurrentIdentity, conn: ConnDep) -> Response:
    """The promoter opened it (repeats change nothing)."""
    if not await announcements.mark_read(conn, announcement_id, identity.user_id, utcnow()):
        raise AnnouncementNotFoundError("no such announcement")
    return Response(status_code=204)


@router.get("/me/perks", response_model=list[PerkGrantPublic], tags=["perks"])
async def my_perks(identity: CurrentIdentity, conn: ConnDep) -> list[PerkGrantPublic]:
    """The perks the promoter's tiers granted, and whether each was claimed."""
    return [PerkGrantPublic(**dict(r)) for r in await perks.grants_of(conn, identity.user_id)]


@router.post("/me/perks/{grant_id}/claim", response_model=PerkGrantPublic, tags=["perks"],
             responses={404: {"description": "no such grant of the caller's"},
                        409: {"description": "already claimed (with another idempotency key)"}})
async def claim_perk(identity: CurrentIdentity, rt: RuntimeDep, response: Response,
                     grant_id: str = Path(min_length=1, max_length=64), body: PerkClaim | None = None,
                     idempotency_key: Annotated[str | None, Header(max_length=64)] = None) -> PerkGrantPublic:
    """Claim a granted perk, once. Concurrent claims: one wins; a repeat with the same key
    answers as the first did (200); another key is refused (409). The claim is an event."""
    key = (body.idempotency_key if body else None) or idempotency_key
    if not key:
        raise IdempotencyKeyRequiredError("idempotency_key (body) or Idempotency-Key (header) is required")
    now = utcnow()
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await perks.claim(conn, grant_id, identity.user_id, key, now)
        if row is None:
            existing = await perks.grant(conn, grant_id, identity.user_id)
            if existing is None:
                raise PerkNotFoundError("no such perk grant")
            perk_rules.check_repeat(existing["claim_key"], key)  # raises when claimed with another key
        else:
            evt = PerkClaimed(promoter_id=identity.user_id, grant_id=grant_id, perk_id=row["perk_id"], idempotency_key=key,
                              claimed_at=now)
            await record_events(conn, ENGAGEMENT_EVENTS, [new_event(evt, occurred_at=now)])
            response.status_code = 201
        grants = await perks.grants_of(conn, identity.user_id)
    if row is not None:
        rt.relay.kick()
    return PerkGrantPublic(**dict(next(g for g in grants if g["grant_id"] == grant_id)))

