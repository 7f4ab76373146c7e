"""The commission plan: levels, tiers with their rates, per-product/category overrides, freeze
days and the per-line cap. Validated when saved; a plan that could ever pay a third level or
more than the cap on one line is refused, never clipped.

Rates are basis points (1 bp = 0.01 %) of what the buyer paid for the line; fixed overrides are
fen per unit."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.commission.domain.errors import PlanRefusedError

#: The ceiling no plan may exceed: the sum of all commission on one line is at most 30 % of
#: what the buyer paid for it. Operators may choose a lower cap, never a higher one.
HARD_CAP_BP = 3000
DEFAULT_CAP_BP = 3000
MAX_LEVELS = 2
BP = 10_000

Level = Literal["level1", "level2", "self_purchase"]
LEVELS: tuple[Level, ...] = ("level1", "level2", "self_purchase")


class UpgradeRule(BaseModel):
    """Reach this tier when every threshold given is met by the promoter's own record. There
    is deliberately no threshold on recruits: tiers come from sales, never from team size."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    min_settled_sales_fen: int | None = Field(None, ge=0)
    min_direct_buyers: int | None = Field(None, ge=0)
    min_orders: int | None = Field(None, ge=0)

    def thresholds(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Tier(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str = Field(min_length=1, max_length=32)
    level1_bp: int = Field(ge=0, le=BP)
    level2_bp: int = Field(0, ge=0, le=BP)
    self_purchase_bp: int = Field(0, ge=0, le=BP)
    #: the management bonus (管理奖), where the merchant enables one: bp of what the buyer paid
    #: for a line, paid to a promoter of this tier who is the buyer's level 1 or level 2 (never on
    #: their own purchase, never beyond the two levels), on top of that level's commission
    management_bp: int = Field(0, ge=0, le=BP)
    upgrade: UpgradeRule | None = None

    def rate(self, level: Level) -> int:
        return {"level1": self.level1_bp, "level2": self.level2_bp, "self_purchase": self.self_purchase_bp}[level]


class Override(BaseModel):
    """Rates for one product or one category, for every tier. `percent`: values are bp;
    `fixed`: values are fen per unit, and `min_unit_paid_fen` (the lowest price a unit is ever
    sold for) lets the cap be checked when the plan is saved."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    product_id: str | None = None
    category_id: str | None = None
    mode: Literal["percent", "fixed"]
    level1: int = Field(ge=0)
    level2: int = Field(0, ge=0)
    self_purchase: int = Field(0, ge=0)
    min_unit_paid_fen: int | None = Field(None, gt=0)

    def value(self, level: Level) -> int:
        return {"level1": self.level1, "level2": self.level2, "self_purchase": self.self_purchase}[level]


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    levels: int = 2
    cap_bp: int = DEFAULT_CAP_BP
    freeze_days: int = Field(7, ge=0, le=365)
    tiers: tuple[Tier, ...] = Field(min_length=1)
    overrides: tuple[Override, ...] = ()

    @cached_property
    def tier_by_name(self) -> dict[str, Tier]:
        return {t.name: t for t in self.tiers}

    @cached_property
    def _by_product(self) -> dict[str, Override]:
        return {o.product_id: o for o in self.overrides if o.product_id is not None}

    @cached_property
    def _by_category(self) -> dict[str, Override]:
        return {o.category_id: o for o in self.overrides if o.category_id is not None}

    @cached_property
    def tier_index(self) -> dict[str, int]:
        return {t.name: i for i, t in enumerate(self.tiers)}

    @cached_property
    def upgrade_ladder(self) -> tuple[tuple[int, str, tuple[tuple[str, int], ...]], ...]:
        """(index, name, sorted thresholds) of every tier reachable by an upgrade rule."""
        return tuple((i, t.name, tuple(sorted(t.upgrade.thresholds().items())))
                     for i, t in enumerate(self.tiers) if t.upgrade is not None)

    @cached_property
    def management_enabled(self) -> bool:
        return any(t.management_bp > 0 for t in self.tiers)

    @property
    def base_tier(self) -> Tier:
        return self.tiers[0]

    def tier(self, name: str | None) -> Tier:
        """The named tier; a promoter with no tier yet, or whose tier this plan no longer has,
        is paid at the plan's first (base) tier."""
        if name is None:
            return self.tiers[0]
        return self.tier_by_name.get(name, self.tiers[0])

    def override_for(self, product_id: str, category_id: str | None) -> Override | None:
        """A product override wins over a category override."""
        o = self._by_product.get(product_id)
        if o is None and category_id is not None:
            o = self._by_category.get(category_id)
        return o

    def rate_for(self, tier: str | None, level: Level, product_id: str, category_id: str | None) -> "LineRate":
        o = self.override_for(product_id, category_id)
        if o is None:
            return LineRate(rate_bp=self.tier(tier).rate(level))
        if o.mode == "percent":
            return LineRate(rate_bp=o.value(level))
        return LineRate(fixed_fen_per_unit=o.value(level))

    @cached_property
    def _rate_cache(self) -> dict[tuple[str | None, str, str, str | None], "LineRate"]:
        return {}

    def cached_rate(self, tier: str | None, level: Level, product_id: str, category_id: str | None) -> "LineRate":
        """`rate_for`, memoized (a plan version never changes; bounded, products are many)."""
        key = (tier, level, product_id, category_id)
        rate = self._rate_cache.get(key)
        if rate is None:
            if len(self._rate_cache) >= 100_000:
                self._rate_cache.clear()
            rate = self._rate_cache[key] = self.rate_for(tier, level, product_id, category_id)
        return rate

    def unfreeze(self) -> str:
        return f"order_completed+{self.freeze_days}d"


@dataclass(frozen=True)
class LineRate:
    rate_bp: int | None = None
    fixed_fen_per_unit: int | None = None

    def amount(self, base_fen: int, quantity: int) -> int:
        """Integer fen, rounded down: percent of the whole line's paid amount, or fixed fen times
        the quantity."""
        if self.fixed_fen_per_unit is not None:
            return self.fixed_fen_per_unit * quantity
        return base_fen * (self.rate_bp or 0) // BP


def cap_amount(cap_bp: int, base_fen: int) -> int:
    """The most all commission on one line may add up to (rounded down)."""
    return base_fen * cap_bp // BP


def _mentions_third_level(data: Any) -> bool:
    if isinstance(data, dict):
        return any(("level3" in str(k)) or ("third" in str(k)) or _mentions_third_level(v) for k, v in data.items())
    if isinstance(data, (list, tuple)):
        return any(_mentions_third_level(v) for v in data)
    return False


def worst_case(levels: int, level1: int, level2: int, self_purchase: int) -> int:
    """The most one line can pay in total: the buyer's slot (level 1, or the self-purchase
    rebate when the buyer is a promoter; never both) plus level 2 when the plan has two."""
    return max(level1, self_purchase) + (level2 if levels == 2 else 0)


def parse_plan(data: dict[str, Any]) -> Plan:
    """Validate a plan as an operator submitted it. Raises PlanRefusedError with a code naming
    the broken rule."""
    if not isinstance(data, dict):
        raise PlanRefusedError("a plan is a JSON object", code="plan_invalid")
    if _mentions_third_level(data) or (isinstance(data.get("levels"), int) and data["levels"] > MAX_LEVELS):
        raise PlanRefusedError("commission reaches at most two levels above the buyer; no third level",
                               code="third_level_forbidden")
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanRefusedError(f"{where}: {first['msg']}", code="plan_invalid") from None
    check_plan(plan)
    return plan


def check_plan(plan: Plan) -> None:
    """The rules a plan must satisfy for every tier and every override."""
    if plan.levels not in (1, 2):
        raise PlanRefusedError("levels must be 1 or 2", code="plan_invalid")
    if plan.cap_bp < 0 or plan.cap_bp > HARD_CAP_BP:
        raise PlanRefusedError(f"cap_bp {plan.cap_bp} is above the hard ceiling of {HARD_CAP_BP} bp "
                               f"({HARD_CAP_BP / 100:g} % of what the buyer paid)", code="cap_above_ceiling")
    names = [t.name for t in plan.tiers]
    if len(set(names)) != len(names):
        raise PlanRefusedError("tier names must be unique", code="plan_invalid")
    if plan.tiers[0].upgrade is not None:
        raise PlanRefusedError("the first tier is where every promoter starts; it has no upgrade rule", code="plan_invalid")
    for t in plan.tiers:
        if plan.levels == 1 and t.level2_bp:
            raise PlanRefusedError(f"tier {t.name!r} sets a level-2 rate but the plan pays one level",
                                   code="level2_in_one_level_plan")
        total = worst_case(plan.levels, t.level1_bp, t.level2_bp, t.self_purchase_bp)
        if total > plan.cap_bp:
            raise PlanRefusedError(
                f"tier {t.name!r} could pay {total} bp on one line (max(level1, self) + level2) "
                f"but the cap is {plan.cap_bp} bp", code="plan_over_cap")
        if t.upgrade is not None and not t.upgrade.thresholds():
            raise PlanRefusedError(f"tier {t.name!r}: an upgrade rule needs at least one threshold", code="plan_invalid")
    if plan.management_enabled:
        _check_management_bonus(plan)
    seen: set[tuple[str, str]] = set()
    for o in plan.overrides:
        if (o.product_id is None) == (o.category_id is None):
            raise PlanRefusedError("an override names exactly one of product_id or category_id", code="plan_invalid")
        target = ("product", o.product_id) if o.product_id is not None else ("category", o.category_id)
        if target in seen:
            raise PlanRefusedError(f"two overrides for {target[0]} {target[1]!r}", code="plan_invalid")
        seen.add(target)  # type: ignore[arg-type]
        if plan.levels == 1 and o.level2:
            raise PlanRefusedError(f"override for {target[1]!r} sets a level-2 value but the plan pays one level",
                                   code="level2_in_one_level_plan")
        total = worst_case(plan.levels, o.level1, o.level2, o.self_purchase)
        if o.mode == "percent":
            if max(o.level1, o.level2, o.self_purchase) > BP:
                raise PlanRefusedError(f"override for {target[1]!r}: a rate above 100 %", code="plan_invalid")
            if total > plan.cap_bp:
                raise PlanRefusedError(f"override for {target[1]!r} could pay {total} bp on one line but the cap is "
                                       f"{plan.cap_bp} bp", code="plan_over_cap")
        else:
            if o.min_unit_paid_fen is None:
                raise PlanRefusedError(f"fixed override for {target[1]!r} needs min_unit_paid_fen (the lowest unit "
                                       "price paid) so the cap can be checked", code="plan_invalid")
            if total * BP > plan.cap_bp * o.min_unit_paid_fen:
                raise PlanRefusedError(
                    f"fixed override for {target[1]!r} could pay {total} fen per unit, more than the cap of "
                    f"{plan.cap_bp} bp of {o.min_unit_paid_fen} fen", code="plan_over_cap")


def _check_management_bonus(plan: Plan) -> None:
    """With a management bonus the level-1 and level-2 promoters of a line may be of different
    tiers, each adding their own bonus: the worst case is taken across tiers, slot by slot
    (the buyer's slot: level 1 with its bonus, or the self-purchase rebate without one; then
    level 2 with its bonus), for tier rates, percent overrides and fixed overrides (at their
    lowest unit price). A plan that could pay more than the cap on a line is refused."""
    mb = max(t.management_bp for t in plan.tiers)
    two = plan.levels == 2
    slot1 = max(max(t.level1_bp + t.management_bp for t in plan.tiers), max(t.self_purchase_bp for t in plan.tiers))
    slot2 = max(t.level2_bp + t.management_bp for t in plan.tiers) if two else 0
    if slot1 + slot2 > plan.cap_bp:
        raise PlanRefusedError(
            f"with the management bonus a line could pay {slot1 + slot2} bp (level 1 + bonus of one tier, level 2 + "
            f"bonus of another) but the cap is {plan.cap_bp} bp", code="plan_over_cap")
    for o in plan.overrides:
        target = o.product_id if o.product_id is not None else o.category_id
        if o.mode == "percent":
            total = max(o.level1 + mb, o.self_purchase) + ((o.level2 + mb) if two else 0)
            if total > plan.cap_bp:
                raise PlanRefusedError(f"override for {target!r} with the management bonus could pay {total} bp on one "
                                       f"line but the cap is {plan.cap_bp} bp", code="plan_over_cap")
        elif o.min_unit_paid_fen is not None:
            floor = o.min_unit_paid_fen
            worst = max(o.level1 * BP + mb * floor, o.self_purchase * BP) + ((o.level2 * BP + mb * floor) if two else 0)
            if worst > plan.cap_bp * floor:
                raise PlanRefusedError(f"fixed override for {target!r} with the management bonus could pay more than the "
                                       f"cap of {plan.cap_bp} bp of {floor} fen", code="plan_over_cap")
