"""Binding a customer to the promoter whose share brought them (their level-1 referrer).

`decide` is the whole rule: given what is known at the moment of the share, it says bind,
take over, leave as is, or refuse with a reason. The caller must hold the bindings lock
while it gathers the inputs and applies the outcome (cycle and uniqueness are global facts).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Union

from services.referral.domain.promoters import Promoter

BindingMode = Literal["first_touch", "first_touch_window", "new_users_only", "last_touch"]
BINDING_MODES: tuple[str, ...] = ("first_touch", "first_touch_window", "new_users_only", "last_touch")
RefusalReason = Literal["self_binding", "cycle", "unknown_promoter", "inactive_promoter", "already_bound", "not_new_user"]


@dataclass(frozen=True)
class Policy:
    mode: BindingMode = "first_touch"
    #: first_touch_window: after this many days another promoter may take the customer
    window_days: int = 30


@dataclass(frozen=True)
class CurrentBinding:
    promoter_id: str
    bound_at: datetime


@dataclass(frozen=True)
class BindRequest:
    customer_id: str
    #: the promoter the code resolves to (None: no such code)
    promoter: Promoter | None
    #: the customer's binding in force now, if any
    current: CurrentBinding | None
    #: the promoter's referrers all the way up (level 1 first); the whole chain, not one hop
    promoter_ancestors: tuple[str, ...]
    #: "new user": referral has no earlier record of this user (no visit, no bind attempt, no
    #: enrolment) and no paid order of theirs was seen
    customer_is_new: bool


@dataclass(frozen=True)
class Bind:
    promoter_id: str


@dataclass(frozen=True)
class TakeOver:
    promoter_id: str
    previous_promoter_id: str


@dataclass(frozen=True)
class Unchanged:
    promoter_id: str


@dataclass(frozen=True)
class Refuse:
    reason: RefusalReason
    message: str


Decision = Union[Bind, TakeOver, Unchanged, Refuse]


def window_open(current: CurrentBinding, window_days: int, now: datetime) -> bool:
    """The protection window has lapsed: another promoter may take the customer now."""
    return now >= current.bound_at + timedelta(days=window_days)


def decide(req: BindRequest, policy: Policy, now: datetime) -> Decision:
    p = req.promoter
    if p is None:
        return Refuse("unknown_promoter", "no promoter has this code")
    if p.user_id == req.customer_id:
        return Refuse("self_binding", "a promoter cannot be their own referrer")
    if not p.is_active(now):
        return Refuse("inactive_promoter", f"the promoter is {p.effective_status(now)}")
    cur = req.current
    if cur is not None and cur.promoter_id == p.user_id:
        return Unchanged(p.user_id)

    outcome: Decision
    if cur is None:
        if policy.mode == "new_users_only" and not req.customer_is_new:
            return Refuse("not_new_user", "only new users can be bound in this shop")
        outcome = Bind(p.user_id)
    elif policy.mode == "last_touch":
        outcome = TakeOver(p.user_id, cur.promoter_id)
    elif policy.mode == "first_touch_window" and window_open(cur, policy.window_days, now):
        outcome = TakeOver(p.user_id, cur.promoter_id)
    else:
        return Refuse("already_bound", "the customer already belongs to another promoter")

    # The customer must not be anywhere above the promoter: A->B->C->A is refused at any depth.
    if req.customer_id in req.promoter_ancestors:
        return Refuse("cycle", "the customer is already one of this promoter's referrers")
    return outcome
