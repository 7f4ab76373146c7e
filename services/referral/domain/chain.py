"""The chain: who were a user's level-1 and level-2 referrers at an instant.

A binding is valid over [bound_at, superseded_at); level 2 is the level-1 referrer's own
level-1 referrer at the same instant. Commission never reaches further than two levels."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

MAX_LEVELS = 2


@dataclass(frozen=True)
class Link:
    customer_id: str
    promoter_id: str
    valid_from: datetime
    valid_to: datetime | None = None

    def valid_at(self, at: datetime) -> bool:
        return self.valid_from <= at and (self.valid_to is None or at < self.valid_to)


def referrer_at(links: Iterable[Link], user_id: str, at: datetime) -> Link | None:
    for link in links:
        if link.customer_id == user_id and link.valid_at(at):
            return link
    return None


def chain_at(links: Iterable[Link], user_id: str, at: datetime) -> tuple[Link, ...]:
    """Level 1 then level 2 (at most), each valid at `at`."""
    links = list(links)
    out: list[Link] = []
    who = user_id
    for _ in range(MAX_LEVELS):
        link = referrer_at(links, who, at)
        if link is None:
            break
        out.append(link)
        who = link.promoter_id
    return tuple(out)
