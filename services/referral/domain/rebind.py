"""An operator changes a customer's referrer (a support case: the wrong share was credited).

Only with a reason, only to an active promoter, never to the customer themselves nor into a
cycle. The change is a new binding from now on (history is never rewritten): orders already
paid keep the chain they were paid under."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.referral.domain import errors
from services.referral.domain.binding import CurrentBinding
from services.referral.domain.promoters import Promoter

REASON_MIN = 2


@dataclass(frozen=True)
class Rebind:
    customer_id: str
    promoter_id: str
    previous_promoter_id: str | None  # None: the customer had no referrer
    reason: str


def decide_rebind(customer_id: str, promoter: Promoter | None, current: CurrentBinding | None,
                  promoter_ancestors: tuple[str, ...], reason: str | None, now: datetime) -> Rebind:
    """`promoter_ancestors`: the new promoter's referrers all the way up (current bindings)."""
    reason = (reason or "").strip()
    if len(reason) < REASON_MIN:
        raise errors.ReasonRequiredError("changing a customer's referrer requires a reason")
    if promoter is None:
        raise errors.PromoterNotFoundError("the new referrer is not a promoter")
    if not promoter.is_active(now):
        raise errors.PromoterInactiveError("the new referrer is not an active promoter")
    if promoter.user_id == customer_id:
        raise errors.BindingRefusedError("self_binding", "a customer cannot be their own referrer")
    if customer_id in promoter_ancestors:
        raise errors.BindingRefusedError("cycle", "the customer is above the new referrer: that would be a cycle")
    if current is not None and current.promoter_id == promoter.user_id:
        raise errors.RebindUnchangedError("the customer is already bound to this promoter")
    return Rebind(customer_id, promoter.user_id, current.promoter_id if current else None, reason)
