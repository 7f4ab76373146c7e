"""Use cases, each run inside the caller's transaction: load state -> domain rule -> store,
returning the events to publish (the caller writes them to the outbox in the same
transaction: `record_events` from HTTP, `batch.emit` from a projection).

Shared by the HTTP API and the order projection (which enrols by first order / spend)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

import asyncpg

from services.referral.domain import binding as rules
from services.referral.domain import codes, errors
from services.referral.domain import promoters as enrolment
from services.referral.domain.promoters import Application, EnrolledBy, Promoter
from services.referral.store import arrivals as arrivals_store
from services.referral.store import bindings as bindings_store
from services.referral.store import merchant as merchant_store
from services.referral.store import orders as orders_store
from services.referral.store import person_keys
from services.referral.store import promoters as promoters_store
from services.referral.store import users as users_store
from shared.contracts.referral import (
    BindingRefused, PromoterApplicationDecided, PromoterApplicationSubmitted, PromoterEnrolled, PromoterLinkVisited,
    PromoterStatusChanged, ReferralBound, ReferralTakenOver,
)
from shared.display import mask_nickname
from shared.events import Envelope, new_event


# -- enrolment -------------------------------------------------------------------------------
async def _free_code(conn: asyncpg.Connection, first: str | None) -> str:
    if first is not None and not await promoters_store.code_taken(conn, first):
        return first
    for _ in range(8):
        code = codes.new_code()
        if not await promoters_store.code_taken(conn, code):
            return code
    raise RuntimeError("could not draw a free promoter code")  # pragma: no cover - 62**10 codes


async def enrol(conn: asyncpg.Connection, user_id: str, enrolled_by: EnrolledBy, now: datetime, *, master: bytes,
                code: str | None = None, event_id: uuid.UUID | None = None, cause: Envelope | None = None,
                ) -> tuple[Promoter, list[Envelope]]:
    """Make `user_id` an active promoter (the caller has checked they may be one)."""
    await users_store.touch(conn, user_id, now)
    promoter = enrolment.enrol(user_id, await _free_code(conn, code), enrolled_by, now)
    if not await promoters_store.insert(conn, promoter):
        raise errors.AlreadyPromoterError("already a promoter")
    user = await users_store.get(conn, user_id)
    nickname = user.nickname if user else None
    # personal fields go into the log sealed with the person's key (shredded on erasure)
    evt = PromoterEnrolled(promoter_id=user_id, promoter_code=promoter.code, enrolled_by=enrolled_by, enrolled_at=now,
                           nickname_sealed=await person_keys.seal(conn, master, user_id, "nickname", nickname),
                           nickname_masked=mask_nickname(nickname) if nickname else None)
    return promoter, [new_event(evt, event_id=event_id, occurred_at=now, cause=cause)]


async def self_enrol(conn: asyncpg.Connection, user_id: str, now: datetime, *, master: bytes) -> tuple[Promoter, list[Envelope]]:
    """A user asks to become a promoter; an active one gets their record back unchanged."""
    await promoters_store.lock_user(conn, user_id)
    existing = await promoters_store.get(conn, user_id)
    if existing is not None:
        if existing.status == "revoked":
            raise errors.PromoterRevokedError("this promoter was revoked; revocation is final")
        return existing, []
    ms = await merchant_store.load(conn)
    how = enrolment.self_enrolment(ms.enrolment_mode, await orders_store.spend(conn, user_id), ms.spend_threshold_fen)  # type: ignore[arg-type]
    return await enrol(conn, user_id, how, now, master=master)


async def submit_application(conn: asyncpg.Connection, user_id: str, note: str | None, now: datetime, *, master: bytes,
                             ) -> tuple[Application, list[Envelope]]:
    await promoters_store.lock_user(conn, user_id)
    ms = await merchant_store.load(conn)
    app = enrolment.submit_application(ms.enrolment_mode, await promoters_store.get(conn, user_id),  # type: ignore[arg-type]
                                       await promoters_store.application(conn, user_id), user_id, note, now)
    await users_store.touch(conn, user_id, now)
    await promoters_store.save_application(conn, app)
    evt = PromoterApplicationSubmitted(user_id=user_id, submitted_at=now,
                                       note_sealed=await person_keys.seal(conn, master, user_id, "note", note))
    return app, [new_event(evt, occurred_at=now)]


async def decide_application(conn: asyncpg.Connection, user_id: str, approved: bool, reason: str | None,
                             operator: str, now: datetime, *, master: bytes,
                             ) -> tuple[Application, Promoter | None, list[Envelope]]:
    await promoters_store.lock_user(conn, user_id)
    app = enrolment.decide_application(await promoters_store.application(conn, user_id), approved, reason, operator, now)
    promoter = None
    out: list[Envelope] = []
    if approved:
        existing = await promoters_store.get(conn, user_id)
        enrolment.refuse_if_already(existing)
    await promoters_store.save_application(conn, app)
    evt = PromoterApplicationDecided(user_id=user_id, approved=approved, reason=reason, decided_by=operator, decided_at=now)
    out.append(new_event(evt, occurred_at=now))
    if approved:
        promoter, enrolled = await enrol(conn, user_id, "application", now, master=master)
        out += enrolled
    return app, promoter, out


async def designate(conn: asyncpg.Connection, user_id: str, now: datetime, *, master: bytes) -> tuple[Promoter, list[Envelope]]:
    """An operator makes a user a promoter, in any enrolment mode."""
    await promoters_store.lock_user(conn, user_id)
    enrolment.refuse_if_already(await promoters_store.get(conn, user_id))
    return await enrol(conn, user_id, "operator", now, master=master)


async def change_status(conn: asyncpg.Connection, user_id: str, status: str, reason: str | None,
                        until: datetime | None, operator: str, now: datetime) -> tuple[Promoter, list[Envelope]]:
    p = await promoters_store.get(conn, user_id, for_update=True)
    if p is None:
        raise errors.PromoterNotFoundError("no such promoter")
    changed = enrolment.change_status(p, status, reason, until, now)  # type: ignore[arg-type]
    if changed is None:
        return p, []
    await promoters_store.save_status(conn, changed)
    evt = PromoterStatusChanged(promoter_id=user_id, status=changed.status, reason=reason,
                                until=changed.suspended_until, changed_at=now, changed_by=operator)
    return changed, [new_event(evt, occurred_at=now)]


# -- binding ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BindOutcome:
    decision: rules.Decision
    binding: bindings_store.BindingRow | None
    events: list[Envelope]


async def bind(conn: asyncpg.Connection, customer_id: str, promoter_code: str, source: str, product_id: str | None,
               clock: Callable[[], datetime], *, nickname: str | None = None, avatar_url: str | None = None) -> BindOutcome:
    """A user arrived through a share. Decide under the binding graph's locks (the customer's
    node, the promoter's chain: `store.bindings`), store the outcome and its event (a refusal is
    stored too: the caller commits, then answers 4xx).

    What other binds cannot change is read before the locks (settings, the promoter, the visit),
    and what they can is read under them (`bind_state`)."""
    # "new": nothing of this user before this arrival (no visit, no bind attempt, no enrolment)
    # and no paid order of theirs seen. This arrival is recorded as their first visit; the row
    # lock it takes queues a second arrival of the same user behind this one.
    arrival = await arrivals_store.arrive(conn, customer_id,
                                          promoter_code if codes.looks_like_code(promoter_code) else None, clock(),
                                          nickname=nickname, avatar_url=avatar_url)
    ms, promoter, known = arrival.settings, arrival.promoter, arrival.known
    # `arrive` ended by locking the customer's node and the promoter's.
    # Read the time only once they are held: one customer's binds are then stamped in the order
    # they happen, so a takeover never starts before the binding it ends.
    now = clock()
    state = await bindings_store.bind_state(conn, customer_id, promoter.user_id if promoter else None)
    current, ancestors = state.current, state.ancestors
    is_new = not known and not state.has_paid_order
    if current is not None and now < current.bound_at:
        now = current.bound_at  # another instance's clock ran ahead: never end an interval before it began
    req = rules.BindRequest(customer_id=customer_id, promoter=promoter, current=bindings_store.as_current(current),
                            promoter_ancestors=ancestors, customer_is_new=is_new)
    decision = rules.decide(req, ms.policy, now)
    mode = ms.binding_mode
    # the visit of the promoter's share, whatever the bind decides (the conversion funnel counts it)
    visit = [] if promoter is None or promoter.user_id == customer_id else [new_event(PromoterLinkVisited(
        promoter_id=promoter.user_id, promoter_code=promoter.code, visitor_id=customer_id, source=source,  # type: ignore[arg-type]
        product_id=product_id, first_visit=not known, visited_at=now), occurred_at=now)]

    if isinstance(decision, rules.Refuse):
        seen = await bindings_store.count_refusal(conn, customer_id=customer_id,
                                                  promoter_id=promoter.user_id if promoter else None,
                                                  reason=decision.reason, refused_at=now)
        if seen > bindings_store.REFUSALS_KEPT_PER_DAY:  # spam: answered, counted, neither stored nor announced
            return BindOutcome(decision, current, visit)
        evt = BindingRefused(customer_id=customer_id, promoter_code=promoter_code[:64],
                             promoter_id=promoter.user_id if promoter else None, source=source,  # type: ignore[arg-type]
                             reason=decision.reason, refused_at=now)
        env = new_event(evt, occurred_at=now)
        await bindings_store.record_refusal(conn, customer_id=customer_id, promoter_code=promoter_code,
                                            promoter_id=evt.promoter_id, source=source, product_id=product_id,
                                            reason=decision.reason, refused_at=now, event_id=env.event_id)
        return BindOutcome(decision, current, visit + [env])
    if isinstance(decision, rules.Unchanged):
        return BindOutcome(decision, current, visit)

    assert promoter is not None
    if isinstance(decision, rules.TakeOver):
        payload = ReferralTakenOver(customer_id=customer_id, promoter_id=promoter.user_id,
                                    previous_promoter_id=decision.previous_promoter_id, promoter_code=promoter.code,
                                    source=source, product_id=product_id, mode=mode, bound_at=now)  # type: ignore[arg-type]
        if not await bindings_store.supersede(conn, customer_id, decision.previous_promoter_id, now):
            raise RuntimeError("current binding moved while the customer's node was locked")  # pragma: no cover
    else:
        payload = ReferralBound(customer_id=customer_id, promoter_id=promoter.user_id, promoter_code=promoter.code,  # type: ignore[assignment]
                                source=source, product_id=product_id, mode=mode, bound_at=now)  # type: ignore[arg-type]
    env = new_event(payload, occurred_at=now)
    row = await bindings_store.insert(conn, customer_id=customer_id, promoter_id=promoter.user_id,
                                      promoter_code=promoter.code, source=source, product_id=product_id, mode=mode,
                                      bound_at=now, event_id=env.event_id)
    return BindOutcome(decision, row, visit + [env])


# -- operator rebind -------------------------------------------------------------------------
async def rebind(conn: asyncpg.Connection, customer_id: str, promoter_id: str, reason: str | None, operator: str,
                 clock: Callable[[], datetime]) -> tuple[bindings_store.BindingRow, list[Envelope]]:
    """An operator changes `customer_id`'s referrer to `promoter_id`, with a reason that travels
    in the event (`ReferralTakenOver`, or `ReferralBound` if there was none, `source="operator"`,
    `reason`, `changed_by`): the commission service follows it from `bound_at` on like any other."""
    from services.referral.domain.rebind import decide_rebind

    promoter = await promoters_store.get(conn, promoter_id)
    await bindings_store.lock_for_bind(conn, customer_id, promoter_id)  # as bind does: the cycle check and the write
    now = clock()
    state = await bindings_store.bind_state(conn, customer_id, promoter_id)
    current = state.current
    if current is not None and now < current.bound_at:
        now = current.bound_at
    decision = decide_rebind(customer_id, promoter, bindings_store.as_current(current), state.ancestors, reason, now)
    assert promoter is not None
    mode = (await merchant_store.load(conn)).binding_mode
    common = dict(customer_id=customer_id, promoter_id=promoter.user_id, promoter_code=promoter.code, source="operator",
                  product_id=None, mode=mode, bound_at=now, reason=decision.reason, changed_by=operator)
    if decision.previous_promoter_id is not None:
        payload = ReferralTakenOver(previous_promoter_id=decision.previous_promoter_id, **common)  # type: ignore[arg-type]
        if not await bindings_store.supersede(conn, customer_id, decision.previous_promoter_id, now):
            raise RuntimeError("current binding moved while the customer's node was locked")  # pragma: no cover
    else:
        payload = ReferralBound(**common)  # type: ignore[assignment,arg-type]
    env = new_event(payload, occurred_at=now)
    row = await bindings_store.insert(conn, customer_id=customer_id, promoter_id=promoter.user_id,
                                      promoter_code=promoter.code, source="operator", product_id=None, mode=mode,
                                      bound_at=now, event_id=env.event_id)
    return row, [env]
