"""Binding a customer through a share, the chain at an instant, and a promoter's team."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query

from services.referral import flows
from services.referral.api import schemas
from services.referral.api.deps import NowDep, RuntimeDep, in_transaction, read
from services.referral.domain import binding as rules
from services.referral.domain import errors
from shared.display import mask_nickname
from services.referral.store import bindings as bindings_store
from services.referral.store import chain as chain_store
from services.referral.store import promoters as promoters_store
from shared.identity import CurrentIdentity
from shared.limits import rate_limited

router = APIRouter(prefix="/v1", tags=["bindings"])

_REFUSALS = {409: {"description": "refused: already_bound, cycle, inactive_promoter, not_new_user"},
             404: {"description": "refused: unknown_promoter"}, 422: {"description": "refused: self_binding; invalid input"}}


def binding_public(b: bindings_store.BindingRow) -> schemas.BindingPublic:
    return schemas.BindingPublic(**b.__dict__)


@router.post("/bindings", response_model=schemas.BindingResult, dependencies=[Depends(rate_limited("bind"))],
             responses={**_REFUSALS, 429: {"description": "rate limited (`Retry-After` says when to try again)"}})
async def bind(body: schemas.BindingCreate, identity: CurrentIdentity, rt: RuntimeDep):
    """The gateway reports that the signed-in user (the customer) arrived through a share.
    A refusal is recorded (BindingRefused + a row) and answered with its reason code."""
    async def work(conn):
        out = await flows.bind(conn, identity.user_id, body.promoter_code, body.source, body.product_id,
                               rt.extras["clock"], nickname=body.nickname, avatar_url=body.avatar_url)
        return out, out.events
    out = await in_transaction(rt, work)
    d = out.decision
    if isinstance(d, rules.Refuse):
        raise errors.BindingRefusedError(d.reason, d.message)  # after the commit: the refusal stays recorded
    outcome = {rules.Bind: "bound", rules.TakeOver: "taken_over", rules.Unchanged: "unchanged"}[type(d)]
    assert out.binding is not None
    return schemas.BindingResult(outcome=outcome, binding=binding_public(out.binding))


@router.get("/bindings/me", response_model=schemas.BindingPublic | None)
async def my_binding(identity: CurrentIdentity, rt: RuntimeDep):
    b = await read(rt, lambda conn: bindings_store.current(conn, identity.user_id))
    return binding_public(b) if b else None


@router.get("/chain/{user_id}", response_model=schemas.ChainPublic)
async def chain(identity: CurrentIdentity, rt: RuntimeDep, now: NowDep,
                user_id: str = Path(min_length=1, max_length=128),
                at: datetime | None = Query(None, description="ISO 8601 instant with offset; default now")):
    """Level-1 and level-2 referrers of `user_id` at instant `at`, from the chain projection
    over the referral topic. A user may ask about themselves; an operator role about anyone."""
    if not identity.is_staff and identity.user_id != user_id:
        raise errors.ForbiddenError("only an operator role may read another user's chain")
    if at is not None and at.tzinfo is None:
        raise errors.ReferralError("`at` must carry its UTC offset")
    when = at or now

    async def work(conn):
        l1 = await chain_store.link_at(conn, user_id, when)
        l2 = await chain_store.link_at(conn, l1.promoter_id, when) if l1 else None
        level = lambda n, link: schemas.ChainLevel(level=n, promoter_id=link.promoter_id, bound_at=link.valid_from,  # noqa: E731
                                                   until=link.valid_to) if link else None
        return schemas.ChainPublic(user_id=user_id, at=when, level1=level(1, l1), level2=level(2, l2))
    return await read(rt, work)


@router.get("/promoters/me/team", response_model=schemas.TeamPage)
async def team(identity: CurrentIdentity, rt: RuntimeDep,
               level: int = Query(1, ge=1, le=2), page: int = Query(1, ge=1, le=100_000),
               page_size: int = Query(20, ge=1, le=100)):
    """A promoter's current level-1 or level-2 customers with their paid orders since they were
    bound. Personal data masked: nickname only, first character kept; no ids, phones or openids."""
    async def work(conn):
        if await promoters_store.get(conn, identity.user_id) is None:
            raise errors.NotAPromoterError("only promoters have a team")
        return await bindings_store.team(conn, identity.user_id, level, page_size, (page - 1) * page_size)
    total, members = await read(rt, work)
    return schemas.TeamPage(level=level, page=page, page_size=page_size, total=total, items=[
        schemas.TeamMemberPublic(nickname=mask_nickname(m.nickname),
                                 via_nickname=mask_nickname(m.via_nickname) if m.via_promoter_id else None,
                                 bound_at=m.bound_at, paid_orders=m.paid_orders, paid_fen=m.paid_fen,
                                 refunded_fen=m.refunded_fen, net_paid_fen=m.paid_fen - m.refunded_fen)
        for m in members])
