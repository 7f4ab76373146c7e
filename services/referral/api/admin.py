"""Operator endpoints: merchant settings and products (plan_admin), applications, designation and
status (operator); any operator role reads (docs/security.md)."""
from __future__ import annotations

import base64
import binascii
from dataclasses import replace

from fastapi import APIRouter, Path, Query

from services.referral import flows
from services.referral.api import schemas
from services.referral.api.deps import NowDep, RuntimeDep, in_transaction, read
from services.referral.api.promoters import application_public, promoter_public
from services.referral.clients.images import ImageFetcher, check_image
from services.referral.domain import errors
from services.referral.store import bindings as bindings_store
from services.referral.store import merchant as merchant_store
from services.referral.store import posters as posters_store
from services.referral.store import promoters as promoters_store
from services.referral.store import users as users_store
from shared.identity import OperatorIdentity, PlanAdminIdentity, StaffIdentity

router = APIRouter(prefix="/v1/admin", tags=["admin"])
UserId = Path(min_length=1, max_length=128)


@router.get("/settings", response_model=schemas.MerchantSettingsPublic)
async def get_settings(_: StaffIdentity, rt: RuntimeDep):
    return (await read(rt, merchant_store.load)).__dict__


@router.put("/settings", response_model=schemas.MerchantSettingsPublic)
async def put_settings(body: schemas.MerchantSettingsUpdate, admin: PlanAdminIdentity, rt: RuntimeDep, now: NowDep):
    async def work(conn):
        cur = await merchant_store.load(conn)
        changes = body.model_dump(exclude_none=True)
        new = replace(cur, **changes, updated_at=now, updated_by=admin.user_id)
        if new.enrolment_mode != cur.enrolment_mode:
            new = replace(new, enrolment_mode_since=now)
        await merchant_store.update(conn, new)
        return new.__dict__, []
    return await in_transaction(rt, work)


@router.get("/applications", response_model=list[schemas.ApplicationPublic])
async def list_applications(_: StaffIdentity, rt: RuntimeDep,
                            state: str | None = Query(None, pattern="^(pending|approved|rejected)$"),
                            page: int = Query(1, ge=1, le=10_000), page_size: int = Query(50, ge=1, le=200)):
    apps = await read(rt, lambda conn: promoters_store.applications(conn, state, page_size, (page - 1) * page_size))
    return [application_public(a) for a in apps]


@router.post("/applications/{user_id}/decision", response_model=schemas.ApplicationPublic)
async def decide(body: schemas.DecisionCreate, admin: OperatorIdentity, rt: RuntimeDep, now: NowDep, user_id: str = UserId):
    """Approve (the applicant becomes a promoter) or reject with a reason."""
    async def work(conn):
        app, _, events = await flows.decide_application(conn, user_id, body.approved, body.reason, admin.user_id, now,
                                                        master=rt.extras["personal_data_key"])
        return app, events
    return application_public(await in_transaction(rt, work))


@router.post("/promoters/{user_id}/designate", response_model=schemas.PromoterPublic, status_code=201)
async def designate(body: schemas.Profile, _: OperatorIdentity, rt: RuntimeDep, now: NowDep, user_id: str = UserId):
    async def work(conn):
        if body.nickname or body.avatar_url:
            await users_store.touch(conn, user_id, now, nickname=body.nickname, avatar_url=body.avatar_url)
        return await flows.designate(conn, user_id, now, master=rt.extras["personal_data_key"])
    return promoter_public(await in_transaction(rt, work), now)


@router.post("/promoters/{user_id}/status", response_model=schemas.PromoterPublic)
async def change_status(body: schemas.StatusChange, admin: OperatorIdentity, rt: RuntimeDep, now: NowDep, user_id: str = UserId):
    """Suspend (with `until` for a temporary suspension), reinstate, or revoke (final); a reason
    is required to suspend or revoke."""
    async def work(conn):
        return await flows.change_status(conn, user_id, body.status, body.reason, body.until, admin.user_id, now)
    return promoter_public(await in_transaction(rt, work), now)


@router.get("/promoters/{user_id}", response_model=schemas.PromoterPublic)
async def get_promoter(_: StaffIdentity, rt: RuntimeDep, now: NowDep, user_id: str = UserId):
    async def work(conn):
        p = await promoters_store.get(conn, user_id)
        if p is None:
            raise errors.PromoterNotFoundError("no such promoter")
        user = await users_store.get(conn, user_id)
        return promoter_public(p, now, user.nickname if user else None)
    return await read(rt, work)


@router.put("/products/{product_id}", response_model=schemas.ProductPublic)
async def put_product(body: schemas.ProductUpsert, _: PlanAdminIdentity, rt: RuntimeDep, now: NowDep,
                      product_id: str = Path(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_\-.:]+$")):
    """Register a product for posters: its title, price and image (bytes, or a URL on an allowed host)."""
    fetcher: ImageFetcher = rt.extras["images"]
    if body.image_base64 is not None:
        image = check_image(decode_image(body.image_base64), fetcher.max_bytes)
    else:
        image = await fetcher.fetch(body.image_url)  # type: ignore[arg-type]
    product = posters_store.Product(product_id, body.title, body.price_fen, image, body.image_url, now)

    async def work(conn):
        await posters_store.save_product(conn, product)
        return None, []
    await in_transaction(rt, work)
    return schemas.ProductPublic(product_id=product_id, title=body.title, price_fen=body.price_fen,
                                 image_url=body.image_url, has_image=True, updated_at=now)


def decode_image(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise errors.ImageRefusedError("image_base64 is not valid base64") from exc


# -- the operators' console: search, a promoter's team, a customer's referrer --------------------
@router.get("/promoters", response_model=list[schemas.PromoterListed])
async def search_promoters(_: StaffIdentity, rt: RuntimeDep, now: NowDep,
                           q: str | None = Query(None, min_length=1, max_length=128),
                           status: str | None = Query(None, pattern="^(active|suspended|revoked)$"),
                           page: int = Query(1, ge=1, le=10_000), page_size: int = Query(50, ge=1, le=200)):
    """Promoters by id, code or nickname, newest first, with their current level-1 team size."""
    rows = await read(rt, lambda conn: promoters_store.search(conn, q, status, page_size, (page - 1) * page_size))
    out = []
    for r in rows:
        nickname, team_size = r.pop("nickname"), r.pop("team_size")
        p = promoters_store.Promoter(**r)
        out.append(schemas.PromoterListed(**promoter_public(p, now, nickname).model_dump(), team_size=team_size))
    return out


@router.get("/promoters/{user_id}/team", response_model=schemas.AdminTeamPage)
async def promoter_team(_: StaffIdentity, rt: RuntimeDep, user_id: str = UserId,
                        level: int = Query(1, ge=1, le=2), page: int = Query(1, ge=1, le=100_000),
                        page_size: int = Query(20, ge=1, le=100)):
    """A promoter's current level-1 or level-2 customers (ids shown: operators only)."""
    total, members = await read(rt, lambda conn: bindings_store.team(conn, user_id, level, page_size, (page - 1) * page_size))
    return schemas.AdminTeamPage(level=level, page=page, page_size=page_size, total=total, items=[
        schemas.AdminTeamMember(customer_id=m.customer_id, nickname=m.nickname, via_promoter_id=m.via_promoter_id,
                                bound_at=m.bound_at, paid_orders=m.paid_orders, paid_fen=m.paid_fen,
                                refunded_fen=m.refunded_fen) for m in members])


@router.get("/customers/{customer_id}/bindings", response_model=list[schemas.BindingPublic])
async def customer_bindings(_: StaffIdentity, rt: RuntimeDep, customer_id: str = Path(min_length=1, max_length=128)):
    """Every binding the customer had, oldest first (the current one has no `superseded_at`)."""
    rows = await read(rt, lambda conn: bindings_store.history(conn, customer_id))
    return [schemas.BindingPublic(**b.__dict__) for b in rows]


@router.post("/customers/{customer_id}/referrer", response_model=schemas.BindingPublic,
             responses={409: {"description": "cycle, unchanged, inactive promoter"}, 422: {"description": "reason required, self"}})
async def change_referrer(body: schemas.ReferrerChange, admin: OperatorIdentity, rt: RuntimeDep,
                          customer_id: str = Path(min_length=1, max_length=128)):
    """An operator changes a customer's referrer from now on, with a reason. The event
    (`ReferralTakenOver`/`ReferralBound`, source `operator`) carries the reason and the operator."""
    async def work(conn):
        return await flows.rebind(conn, customer_id, body.promoter_id, body.reason, admin.user_id, rt.extras["clock"])
    row = await in_transaction(rt, work)
    return schemas.BindingPublic(**row.__dict__)
