"""POST /v1/posters: the calling promoter's poster for a product, as image/png."""
from __future__ import annotations

import hashlib

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from services.referral.api import schemas
from services.referral.api.admin import decode_image
from services.referral.api.deps import NowDep, RuntimeDep, in_transaction, read
from services.referral.clients.images import ImageFetcher, check_image
from services.referral.domain import errors
from services.referral.posters.service import CodeSource, PosterRequest, poster
from services.referral.store import posters as posters_store
from services.referral.store import promoters as promoters_store
from services.referral.store import users as users_store
from shared.contracts.referral import PromoterShareMade
from shared.events import new_event
from shared.identity import CurrentIdentity
from shared.limits import rate_limited

router = APIRouter(prefix="/v1", tags=["posters"])


@router.post("/posters", response_class=Response, dependencies=[Depends(rate_limited("poster"))],
             responses={429: {"description": "rate limited (`Retry-After` says when to try again)"},
                        200: {"content": {"image/png": {}}, "description": "the poster"},
                        403: {"description": "not an active promoter"}, 404: {"description": "unknown product"}})
async def make_poster(body: schemas.PosterCreate, identity: CurrentIdentity, rt: RuntimeDep, now: NowDep):
    fetcher: ImageFetcher = rt.extras["images"]
    codes: CodeSource = rt.extras["codes"]

    async def load(conn):
        p = await promoters_store.get(conn, identity.user_id)
        user = await users_store.get(conn, identity.user_id)
        product = await posters_store.product(conn, body.product_id) if body.product_id else None
        return p, user, product
    promoter, user, product = await read(rt, load)
    if promoter is None:
        raise errors.NotAPromoterError("only promoters have posters")
    if not promoter.is_active(now):
        raise errors.PromoterInactiveError(f"the promoter is {promoter.effective_status(now)}")

    if body.product_id is not None:
        if product is None or product.image is None:
            raise errors.ProductNotFoundError("no such product")
        title, price_fen, image, ref = product.title, product.price_fen, product.image, f"product:{product.product_id}"
    else:
        if body.image_base64 is not None:
            image = check_image(decode_image(body.image_base64), fetcher.max_bytes)
        else:
            image = await fetcher.fetch(body.image_url)  # type: ignore[arg-type]
        title, price_fen = body.title, body.price_fen  # type: ignore[assignment]
        ref = "inline:" + hashlib.sha256(f"{title}\x00{body.image_url or ''}".encode()).hexdigest()[:32]

    req = PosterRequest(promoter_id=promoter.user_id, promoter_code=promoter.code,
                        nickname=(user.nickname if user and user.nickname else "推广员"),
                        avatar_url=user.avatar_url if user else None, product_ref=ref, title=title,  # type: ignore[arg-type]
                        price_fen=price_fen, product_image=image)  # type: ignore[arg-type]
    png, cached = await poster(rt.pool, codes, fetcher, req, now)
    await share_made(rt, promoter.user_id, "poster", body.product_id, now)
    return Response(png, media_type="image/png", headers={"X-Poster-Cache": "hit" if cached else "miss",
                                                         "X-Promoter-Code": promoter.code})


async def share_made(rt, promoter_id: str, source: str, product_id: str | None, now) -> None:
    """Record the share (the first step of its conversion funnel) as an event."""
    async def work(conn):
        evt = PromoterShareMade(promoter_id=promoter_id, source=source, product_id=product_id, made_at=now)  # type: ignore[arg-type]
        return None, [new_event(evt, occurred_at=now)]
    await in_transaction(rt, work)


@router.post("/shares", status_code=204, responses={403: {"description": "not an active promoter"}})
async def report_share(body: schemas.ShareCreate, identity: CurrentIdentity, rt: RuntimeDep, now: NowDep) -> Response:
    """The mini-program reports that the promoter shared a link or QR (a poster is counted when made)."""
    promoter = await read(rt, lambda conn: promoters_store.get(conn, identity.user_id))
    if promoter is None:
        raise errors.NotAPromoterError("only promoters share")
    if not promoter.is_active(now):
        raise errors.PromoterInactiveError(f"the promoter is {promoter.effective_status(now)}")
    await share_made(rt, promoter.user_id, body.source, body.product_id, now)
    return Response(status_code=204)
