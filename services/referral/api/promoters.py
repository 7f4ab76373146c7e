"""Promoter self-service: enrol, apply, see oneself, resolve a code."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Path

from services.referral import flows
from services.referral.api import schemas
from services.referral.api.deps import NowDep, RuntimeDep, SettingsDep, in_transaction, read
from services.referral.domain import codes, errors
from shared.display import mask_nickname
from services.referral.domain.promoters import Application, Promoter
from services.referral.posters.service import CodeSource
from services.referral.store import merchant as merchant_store
from services.referral.store import promoters as promoters_store
from services.referral.store import users as users_store
from shared.identity import CurrentIdentity

router = APIRouter(prefix="/v1", tags=["promoters"])


def promoter_public(p: Promoter, now: datetime, nickname: str | None = None, share_url: str | None = None) -> schemas.PromoterPublic:
    status = p.effective_status(now)
    return schemas.PromoterPublic(
        user_id=p.user_id, code=p.code, status=status, status_reason=p.status_reason if status != "active" else None,
        suspended_until=p.suspended_until if status == "suspended" else None, enrolled_by=p.enrolled_by,
        enrolled_at=p.enrolled_at, nickname=nickname, share_url=share_url)


def application_public(a: Application | None) -> schemas.ApplicationPublic | None:
    return schemas.ApplicationPublic(**a.__dict__) if a else None


@router.post("/visits", response_model=schemas.VisitPublic)
async def record_visit(body: schemas.Profile, identity: CurrentIdentity, rt: RuntimeDep, now: NowDep):
    """The gateway reports a plain visit or login (one not through a share), with the profile
    the mini-program has. A share arrival goes to POST /v1/bindings instead, which records
    the visit itself (so that a new user arriving through a share is still new)."""
    async def work(conn):
        known = await users_store.touch(conn, identity.user_id, now, nickname=body.nickname, avatar_url=body.avatar_url)
        user = await users_store.get(conn, identity.user_id)
        return schemas.VisitPublic(user_id=identity.user_id, first_seen_at=user.first_seen_at, known_before=known), []
    return await in_transaction(rt, work)


@router.post("/promoters", response_model=schemas.PromoterPublic,
             responses={403: {"description": "not eligible in this enrolment mode"}, 409: {"description": "application required / revoked"}})
async def enrol_self(body: schemas.Profile, identity: CurrentIdentity, rt: RuntimeDep, now: NowDep, settings: SettingsDep):
    """Become a promoter, as the merchant's enrolment mode allows (free, always)."""
    async def work(conn):
        if body.nickname or body.avatar_url:
            await users_store.touch(conn, identity.user_id, now, nickname=body.nickname, avatar_url=body.avatar_url)
        promoter, events = await flows.self_enrol(conn, identity.user_id, now, master=rt.extras["personal_data_key"])
        return promoter, events
    p = await in_transaction(rt, work)
    user = await read(rt, lambda conn: users_store.get(conn, identity.user_id))
    return promoter_public(p, now, user.nickname if user else None, _share_url(rt, p.code))


@router.post("/promoters/applications", response_model=schemas.ApplicationPublic, status_code=201,
             responses={409: {"description": "already a promoter, or an application is pending"}})
async def apply(body: schemas.ApplicationCreate, identity: CurrentIdentity, rt: RuntimeDep, now: NowDep):
    """Apply to become a promoter (enrolment mode `application`); an operator decides."""
    async def work(conn):
        if body.nickname or body.avatar_url:
            await users_store.touch(conn, identity.user_id, now, nickname=body.nickname, avatar_url=body.avatar_url)
        return await flows.submit_application(conn, identity.user_id, body.note, now,
                                            master=rt.extras["personal_data_key"])
    return application_public(await in_transaction(rt, work))


@router.get("/promoters/me", response_model=schemas.PromoterMe)
async def me(identity: CurrentIdentity, rt: RuntimeDep, now: NowDep):
    async def work(conn):
        ms = await merchant_store.load(conn)
        p = await promoters_store.get(conn, identity.user_id)
        user = await users_store.get(conn, identity.user_id)
        return schemas.PromoterMe(
            enrolment_mode=ms.enrolment_mode,
            promoter=promoter_public(p, now, user.nickname if user else None, _share_url(rt, p.code)) if p else None,
            application=application_public(await promoters_store.application(conn, identity.user_id)))
    return await read(rt, work)


@router.get("/promoters/by-code/{code}", response_model=schemas.PromoterByCode)
async def by_code(identity: CurrentIdentity, rt: RuntimeDep, now: NowDep,
                  code: str = Path(min_length=1, max_length=codes.SCENE_MAX)):
    """Resolve a share's scene back to its promoter (nickname masked)."""
    async def work(conn):
        p = await promoters_store.by_code(conn, code) if codes.looks_like_code(code) else None
        if p is None:
            raise errors.PromoterNotFoundError("no promoter has this code")
        user = await users_store.get(conn, p.user_id)
        return schemas.PromoterByCode(promoter_id=p.user_id, code=p.code,
                                      nickname_masked=mask_nickname(user.nickname if user else None), active=p.is_active(now))
    return await read(rt, work)


def _share_url(rt, code: str) -> str | None:
    src: CodeSource | None = rt.extras.get("codes")
    return src.share_url(code) if src else None
