"""Tier perks: what an operator defines per tier, granted on reaching the tier, claimed once."""
from __future__ import annotations

import uuid
from typing import Literal

from services.engagement.domain.errors import PerkAlreadyClaimedError

PerkKind = Literal["trial", "gift_pack", "coupon", "other"]
_GRANT_NS = uuid.UUID("3f9f6f0a-5a7c-4d0e-9b1e-7c2d6b9e4a11")


def grant_id(promoter_id: str, perk_id: str) -> str:
    """One grant per promoter and perk, the same id on every replay."""
    return str(uuid.uuid5(_GRANT_NS, f"{promoter_id}:{perk_id}"))


def check_repeat(claimed_key: str | None, key: str) -> bool:
    """A claim of an already claimed grant: True when it is a repeat of the same claim (same
    key: answer as before); a different key is a second claim, refused."""
    if claimed_key == key:
        return True
    raise PerkAlreadyClaimedError("this perk was already claimed")
