"""Business periods in the merchant's time zone (Asia/Shanghai): day, ISO week (Monday
00:00 to Monday 00:00) and calendar month, as half-open UTC intervals [start, end)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal
from zoneinfo import ZoneInfo

PeriodKind = Literal["day", "week", "month"]


@dataclass(frozen=True)
class Period:
    kind: str
    label: str          # 2026-12-01 | 2026-W49 | 2026-12 | all
    start: datetime     # UTC, inclusive
    end: datetime       # UTC, exclusive


def _utc(local: datetime) -> datetime:
    return local.astimezone(timezone.utc)


def period_of(kind: PeriodKind, at: datetime, tz: str) -> Period:
    """The period of `kind` containing instant `at` (aware) in time zone `tz`."""
    if at.tzinfo is None:
        raise ValueError("`at` must be aware")
    z = ZoneInfo(tz)
    local = at.astimezone(z)
    day = local.date()
    if kind == "day":
        first, nxt, label = day, day + timedelta(days=1), day.isoformat()
    elif kind == "week":
        first = day - timedelta(days=day.weekday())
        nxt = first + timedelta(days=7)
        y, w, _ = first.isocalendar()
        label = f"{y}-W{w:02d}"
    elif kind == "month":
        first = day.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        label = f"{first.year}-{first.month:02d}"
    else:
        raise ValueError(f"unknown period {kind!r}")
    return Period(kind, label, _utc(datetime.combine(first, datetime.min.time(), z)),
                  _utc(datetime.combine(nxt, datetime.min.time(), z)))


def previous(p: Period, tz: str) -> Period:
    return period_of(p.kind, p.start - timedelta(seconds=1), tz)  # type: ignore[arg-type]


def month_label(at: datetime, tz: str) -> str:
    return period_of("month", at, tz).label


def month_from_label(label: str, tz: str) -> Period:
    y, m = label.split("-")
    return period_of("month", datetime(int(y), int(m), 15, 12, tzinfo=ZoneInfo(tz)), tz)


def local_day(at: datetime, tz: str) -> date:
    return at.astimezone(ZoneInfo(tz)).date()
