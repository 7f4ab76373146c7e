"""Milestones: built-in ones (first sale, first ¥100 settled, top 10 of a month) and those
operators define over a promoter's own record. Each is awarded once per promoter and key."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Metric = Literal["sales", "accrued_fen", "settled_fen", "new_customers"]
METRICS: tuple[str, ...] = ("sales", "accrued_fen", "settled_fen", "new_customers")
TOP_N_OF_MONTH = 10


@dataclass(frozen=True)
class Record:
    """A promoter's all-time record, as the honours read it."""

    sales: int = 0               # paid order lines that earned them commission (level 1 or self-purchase)
    accrued_fen: int = 0
    settled_fen: int = 0         # settled net of reversals of settled money
    new_customers: int = 0       # customers whose first paid order came through them

    def value(self, metric: str) -> int:
        return int(getattr(self, metric))


@dataclass(frozen=True)
class Milestone:
    key: str
    title: str
    metric: str
    threshold: int


BUILT_IN: tuple[Milestone, ...] = (
    Milestone("first_sale", "首单达成", "sales", 1),
    Milestone("settled_100_yuan", "累计结算满100元", "settled_fen", 10_000),
)


def operator_key(rule_id: str) -> str:
    return f"op:{rule_id}"


def due(record: Record, milestones: list[Milestone], held: set[str]) -> list[Milestone]:
    """The milestones `record` has reached that the promoter does not hold yet."""
    return [m for m in milestones if m.key not in held and record.value(m.metric) >= m.threshold]


def top_of_month_key(month_label: str) -> str:
    return f"top10_month:{month_label}"


def top_of_month_title(month_label: str) -> str:
    return f"{month_label} 月度结算佣金前十"
