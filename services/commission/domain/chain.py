"""Who is owed what at the payment instant: bindings, promoter statuses and tiers as histories
with validity intervals (built from referral and commission events), and the chain of
beneficiaries of one order.

Times are compared, not arrival order: a binding applies to an order when `bound_at <= paid_at`,
a status when `changed_at <= paid_at`, a tier when `effective_at < paid_at` (a tier reached by
an order applies to orders paid after it)."""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from services.commission.domain.plan import Level

Status = str  # "active" | "suspended" | "revoked"


@dataclass
class History:
    """Per-user sorted timelines. `seq` breaks ties between equal timestamps (events of one user
    arrive in order on one partition)."""

    bindings: dict[str, list[tuple[datetime, int, str]]] = field(default_factory=dict)
    statuses: dict[str, list[tuple[datetime, int, str, datetime | None]]] = field(default_factory=dict)
    tiers: dict[str, list[tuple[datetime, int, str]]] = field(default_factory=dict)
    #: one string object per promoter id and status named in the rows (every binding row of a
    #: promoter would otherwise hold its own copy, as read from the database)
    _names: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def _name(self, s: str) -> str:
        return self._names.setdefault(s, s)

    def add_binding(self, customer_id: str, bound_at: datetime, seq: int, promoter_id: str) -> None:
        _insort(self.bindings, customer_id, (bound_at, seq, self._name(promoter_id)))

    def add_status(self, promoter_id: str, changed_at: datetime, seq: int, status: Status, until: datetime | None) -> None:
        _insort(self.statuses, self._name(promoter_id), (changed_at, seq, self._name(status), until))

    def add_tier(self, promoter_id: str, effective_at: datetime, seq: int, tier: str) -> None:
        _insort(self.tiers, promoter_id, (effective_at, seq, tier))

    def referrer_at(self, customer_id: str, t: datetime) -> str | None:
        rows = self.bindings.get(customer_id)
        if not rows:
            return None
        i = bisect_right(rows, t, key=lambda r: r[0])
        return rows[i - 1][2] if i else None

    def status_at(self, promoter_id: str, t: datetime) -> Status | None:
        """None: not a promoter at `t`. A suspension with `until` ends by itself."""
        rows = self.statuses.get(promoter_id)
        if not rows:
            return None
        i = bisect_right(rows, t, key=lambda r: r[0])
        if not i:
            return None
        _, _, status, until = rows[i - 1]
        if status == "suspended" and until is not None and t >= until:
            return "active"
        return status

    def tier_at(self, promoter_id: str, t: datetime) -> str | None:
        rows = self.tiers.get(promoter_id)
        if not rows:
            return None
        i = bisect_left(rows, t, key=lambda r: r[0])  # strictly before t
        return rows[i - 1][2] if i else None

    def current_tier(self, promoter_id: str) -> str | None:
        rows = self.tiers.get(promoter_id)
        return rows[-1][2] if rows else None


def _insort(timelines: dict[str, list], who: str, row: tuple) -> None:
    rows = timelines.get(who)
    if rows is None:  # most people have one row: a list of exactly one (an appended-to one reserves four)
        timelines[who] = [row]
        return
    # Rows mostly arrive in time order; appending then sorting only when needed keeps it cheap.
    if (row[0], row[1]) < (rows[-1][0], rows[-1][1]):
        rows.append(row)
        rows.sort(key=lambda r: (r[0], r[1]))
    else:
        rows.append(row)


class Beneficiary(NamedTuple):
    level: Level
    promoter_id: str
    #: None when this would-be beneficiary gets nothing; then `reason` says why
    tier: str | None
    reason: str | None = None

    @property
    def eligible(self) -> bool:
        return self.reason is None


def beneficiaries(history: History, buyer_id: str, paid_at: datetime, levels: int) -> list[Beneficiary]:
    """The chain in force at `paid_at`, at most two levels.

    A buyer who is a promoter (active or suspended) takes the level-1 slot themselves as the
    self-purchase rebate, and their own referrer becomes level 2; a suspended buyer's rebate is
    skipped with the reason but the shape stays, so their upline is never promoted to level 1
    by a suspension. A revoked promoter buys as an ordinary customer. Each slot's promoter must
    be active at `paid_at`, or the slot is skipped with the reason."""
    slots: list[tuple[Level, str]] = []
    buyer_status = history.status_at(buyer_id, paid_at)
    if buyer_status in ("active", "suspended"):
        slots.append(("self_purchase", buyer_id))
        if levels >= 2:
            up = history.referrer_at(buyer_id, paid_at)
            if up is not None:
                slots.append(("level2", up))
    else:
        r1 = history.referrer_at(buyer_id, paid_at)
        if r1 is not None:
            slots.append(("level1", r1))
            if levels >= 2:
                r2 = history.referrer_at(r1, paid_at)
                if r2 is not None:
                    slots.append(("level2", r2))
    out: list[Beneficiary] = []
    seen: set[str] = set()
    for level, pid in slots:
        if pid in seen or (pid == buyer_id and level != "self_purchase"):
            # referral refuses cycles; this guard keeps one person from being paid twice for one line
            out.append(Beneficiary(level, pid, None, "cycle"))
            continue
        seen.add(pid)
        status = history.status_at(pid, paid_at)
        if status is None:
            out.append(Beneficiary(level, pid, None, "not_a_promoter"))
        elif status != "active":
            out.append(Beneficiary(level, pid, None, status))
        else:
            out.append(Beneficiary(level, pid, history.tier_at(pid, paid_at)))
    return out
