"""The bench's population, orders and the commission they must earn, computed here
independently of the commission service (its own plan arithmetic, not the service's domain
code), so that "every balance is updated" is checked against an oracle and not against the
code under test.

Population (N users): a tenth are promoters, a quarter of those founders; every other promoter
first arrived through an earlier promoter's share (so it is that promoter's level 1 and gives
them level 2 on its own customers). Customers: 95 % bound to a random promoter, the rest never
bound (their orders earn nobody anything). Buyers are customers (level 1 + level 2) and, for
15 % of orders, promoters buying themselves (self-purchase rebate + level 2).

Probes (for the latency phase): pairs (promoter, customer) with no other traffic, so that the
moment a probe order's commission lands is the moment that promoter's balance moves."""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

#: the plan the bench publishes (the demo's plan, see simulation/traffic.py; no freeze needed)
PLAN = {
    "levels": 2,
    "cap_bp": 3000,
    "freeze_days": 7,
    "tiers": [
        {"name": "分享家", "level1_bp": 1000, "level2_bp": 300, "self_purchase_bp": 500},
        {"name": "合伙人", "level1_bp": 1500, "level2_bp": 500, "self_purchase_bp": 800,
         "upgrade": {"min_settled_sales_fen": 50_000, "min_orders": 3}},
    ],
    "overrides": [{"category_id": "tea", "mode": "percent", "level1": 1200, "level2": 400, "self_purchase": 600}],
}
# Tier upgrades need settled sales; nothing settles in the bench (no order completes within the
# freeze), so every promoter stays at the base tier and these are the rates in force.
_BASE = {"level1": 1000, "level2": 300, "self_purchase": 500}
_TEA = {"level1": 1200, "level2": 400, "self_purchase": 600}

#: (product_id, category_id, unit price fen); tea lines take the category override
PRODUCTS = [("p-tea-1", "tea", 12_800), ("p-tea-2", "tea", 8_800), ("p-tea-3", "tea", 3_600),
            ("p-cup-1", "ware", 3_900), ("p-pot-1", "ware", 26_800), ("p-snack-1", "snack", 1_990)]


@dataclass
class Population:
    run: str
    promoters: list[str] = field(default_factory=list)
    codes: dict[str, str] = field(default_factory=dict)
    #: promoter -> the promoter it is bound to (its level 1; their level 2 on its customers)
    upline: dict[str, str] = field(default_factory=dict)
    customers: list[str] = field(default_factory=list)
    #: customer -> promoter
    referrer: dict[str, str] = field(default_factory=dict)
    probes: list[tuple[str, str]] = field(default_factory=list)
    since: datetime = field(default_factory=lambda: datetime.now(timezone.utc) - timedelta(hours=1))
    #: latency phases so far that used the probes (each pays every probe once more)
    probe_round: int = 0

    @property
    def users(self) -> int:
        return len(self.promoters) + len(self.customers)

    def bindings(self) -> int:
        return len(self.upline) + len(self.referrer)


def population(run: str, users: int, *, probes: int = 0, seed: int = 8) -> Population:
    rnd = random.Random(seed)
    pop = Population(run)
    n_promoters = max(4, users // 10)
    founders = max(2, n_promoters // 4)
    for i in range(n_promoters):
        pid = f"bp{run}-{i}"
        pop.promoters.append(pid)
        pop.codes[pid] = f"C{run[-6:]}{i}"[:32]
        if i >= founders:
            pop.upline[pid] = pop.promoters[rnd.randrange(i)]
    for i in range(users - n_promoters):
        cid = f"bc{run}-{i}"
        pop.customers.append(cid)
        if rnd.random() < 0.95:
            pop.referrer[cid] = pop.promoters[rnd.randrange(n_promoters)]
    for i in range(probes):
        p, c = f"bpp{run}-{i}", f"bpc{run}-{i}"
        pop.codes[p] = f"P{run[-6:]}{i}"[:32]
        pop.probes.append((p, c))
    return pop


def referral_events(pop: Population) -> list:
    """PromoterEnrolled for every promoter (probes too), then ReferralBound for every binding,
    stamped an hour ago: the chain is in force for every order the bench pays."""
    from shared.contracts.referral import PromoterEnrolled, ReferralBound
    from shared.events import new_event

    at = pop.since
    out = []
    for p in pop.promoters + [p for p, _ in pop.probes]:
        out.append(new_event(PromoterEnrolled(promoter_id=p, promoter_code=pop.codes[p], enrolled_by="operator",
                                              enrolled_at=at), occurred_at=at))
    bound_at = at + timedelta(seconds=1)
    pairs = list(pop.upline.items()) + list(pop.referrer.items()) + [(c, p) for p, c in pop.probes]
    for who, promoter in pairs:
        out.append(new_event(ReferralBound(customer_id=who, promoter_id=promoter, promoter_code=pop.codes[promoter],
                                           source="poster", mode="first_touch", bound_at=bound_at), occurred_at=bound_at))
    return out


@dataclass(frozen=True)
class Line:
    line_id: str
    product_id: str
    category_id: str
    quantity: int
    unit_price_fen: int
    paid_fen: int


@dataclass(frozen=True)
class Order:
    order_id: str
    buyer_id: str
    lines: tuple[Line, ...]


def orders(pop: Population, count: int, *, seed: int, prefix: str = "o") -> list[Order]:
    """`count` paid orders: 1-3 lines, quantities 1-3, a fifth of lines discounted."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        buyer = rnd.choice(pop.promoters) if rnd.random() < 0.15 else rnd.choice(pop.customers)
        lines = []
        for j in range(rnd.randint(1, 3)):
            pid, cat, price = rnd.choice(PRODUCTS)
            qty = rnd.randint(1, 3)
            paid = price * qty - (rnd.randrange(1, 5) * 100 if rnd.random() < 0.2 else 0)
            lines.append(Line(f"l{j}", pid, cat, qty, price, max(paid, 1)))
        out.append(Order(f"{prefix}{pop.run}-{i}", buyer, tuple(lines)))
    return out


def probe_order(pop: Population, i: int) -> tuple[Order, str, int]:
    """The i-th probe's order in this round, its promoter and the balance (frozen fen) it must
    reach (each round pays every probe promoter once more)."""
    promoter, customer = pop.probes[i]
    line = Line("l0", "p-pot-1", "ware", 1, 26_800, 26_800)
    oid = f"probe{pop.run}-{i}" if pop.probe_round == 0 else f"probe{pop.run}-r{pop.probe_round}-{i}"
    return Order(oid, customer, (line,)), promoter, (pop.probe_round + 1) * (26_800 * _BASE["level1"] // 10_000)


def paid_event(order: Order, paid_at: datetime | None = None):
    from shared.contracts.orders import OrderLine, OrderPaid
    from shared.events import new_event

    at = paid_at or datetime.now(timezone.utc)
    lines = tuple(OrderLine(line_id=l.line_id, product_id=l.product_id, category_id=l.category_id, quantity=l.quantity,
                            unit_price_fen=l.unit_price_fen, paid_fen=l.paid_fen) for l in order.lines)
    total = sum(l.paid_fen for l in order.lines)
    return new_event(OrderPaid(order_id=order.order_id, buyer_id=order.buyer_id, lines=lines, postage_fen=0,
                               total_fen=total, transaction_id="42" + uuid.uuid4().hex[:26], paid_at=at), occurred_at=at)


def chain(pop: Population, buyer: str) -> list[tuple[str, str]]:
    """[(level, promoter)] paid on a buyer's order (all promoters are active; the population has
    no cycles, so nobody holds two slots)."""
    probe_promoter = {c: p for p, c in pop.probes}
    if buyer in probe_promoter:
        return [("level1", probe_promoter[buyer])]
    if buyer in pop.codes:  # a promoter buying: the rebate, and their upline as level 2
        slots = [("self_purchase", buyer)]
        if buyer in pop.upline:
            slots.append(("level2", pop.upline[buyer]))
        return slots
    r1 = pop.referrer.get(buyer)
    if r1 is None:
        return []
    slots = [("level1", r1)]
    if r1 in pop.upline:
        slots.append(("level2", pop.upline[r1]))
    return slots


def expected(pop: Population, paid: list[Order]) -> tuple[dict[str, int], int]:
    """(frozen fen per promoter, number of accruals) the orders must produce."""
    frozen: dict[str, int] = {}
    accruals = 0
    for o in paid:
        slots = chain(pop, o.buyer_id)
        for line in o.lines:
            rates = _TEA if line.category_id == "tea" else _BASE
            for level, promoter in slots:
                amount = line.paid_fen * rates[level] // 10_000
                if amount > 0:
                    frozen[promoter] = frozen.get(promoter, 0) + amount
                    accruals += 1
    return frozen, accruals
