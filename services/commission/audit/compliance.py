"""Compliance report for a period, from the log: is the scheme what the law allows, and not a pyramid?

Checks what commission really published (its CommissionAccrued / Reversed events) against the
source events (orders, bindings, plans) for the orders paid (refunds: refunded) in [from, to):

1. levels paid: every accrual is level 1, the self-purchase rebate or level 2; never above 2;
2. commission share of sales per order line: all accruals of a line together at most the cap of
   the plan version they used, and never above the hard ceiling (30 %);
3. payments not backed by a paid order: every accrual names an order that was paid, a line of it,
   that line's paid amount as its base, and that order's buyer (none allowed);
4. rewards for recruitment alone: every accrual is caused by an OrderPaid event (its causation id),
   no plan version has a tier threshold other than sales, buyers or orders (none allowed);
5. refunds reversed: for every refunded line, each accrual's reversals add up to its share of the
   refund (all of it for a fully refunded line) (all);
6. the largest teams (everyone below a promoter through bindings in force at `to`) by size and by
   depth, flagging those at or above the thresholds of the criminal law's pyramid-selling
   standard (at least 3 levels and at least 30 people): a structure that large is information for
   the operator; commission on it still stops at two levels.

Output: a readable summary, `compliance.csv` (one row per check), `teams.csv` and `compliance.html`."""
from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from services.commission.audit.rederive import Published, Source
from services.commission.domain.accrual import reversal_amount
from services.commission.domain.plan import HARD_CAP_BP, MAX_LEVELS

LEVEL_DEPTH = {"level1": 1, "self_purchase": 1, "level2": 2}
ALLOWED_THRESHOLDS = {"min_settled_sales_fen", "min_direct_buyers", "min_orders"}
TEAM_LEVELS, TEAM_PEOPLE = 3, 30


@dataclass
class Check:
    name: str
    passed: bool
    value: str
    findings: list[str] = field(default_factory=list)


@dataclass
class Team:
    promoter_id: str
    size: int
    depth: int

    @property
    def at_threshold(self) -> bool:
        return self.depth >= TEAM_LEVELS and self.size >= TEAM_PEOPLE


@dataclass
class Report:
    period: tuple[datetime | None, datetime | None]
    checks: list[Check]
    teams_by_size: list[Team]
    teams_by_depth: list[Team]
    teams_at_threshold: int
    orders: int
    sales_fen: int
    commission_fen: int

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def _in(period: tuple[datetime | None, datetime | None], t: datetime) -> bool:
    lo, hi = period
    return (lo is None or t >= lo) and (hi is None or t < hi)


def teams(src: Source, at: datetime | None) -> list[Team]:
    """Size (everyone below) and depth (levels below) of every promoter's team through the bindings
    in force at `at` (the latest binding of each customer when None)."""
    children: dict[str, list[str]] = {}
    for customer, rows in src.history.bindings.items():
        up = src.history.referrer_at(customer, at) if at is not None else (rows[-1][2] if rows else None)
        if up is not None and up != customer:
            children.setdefault(up, []).append(customer)
    memo: dict[str, tuple[int, int]] = {}

    def measure(root: str) -> tuple[int, int]:
        # iterative post-order (teams can be deep); a cycle (refused by referral) is cut
        stack: list[tuple[str, bool]] = [(root, False)]
        on_path: set[str] = set()
        while stack:
            node, done = stack.pop()
            if done:
                on_path.discard(node)
                size = depth = 0
                for c in children.get(node, ()):
                    if c in memo:
                        cs, cd = memo[c]
                        size, depth = size + 1 + cs, max(depth, cd + 1)
                memo[node] = (size, depth)
                continue
            if node in memo or node in on_path:
                continue
            on_path.add(node)
            stack.append((node, True))
            for c in children.get(node, ()):
                if c not in memo and c not in on_path:
                    stack.append((c, False))
        return memo[root]

    return [Team(p, *measure(p)) for p in children]


def check(src: Source, pub: Published, period: tuple[datetime | None, datetime | None], *, top: int = 10) -> Report:
    """The report (pure)."""
    paid: dict[str, Any] = {}
    paid_event_ids: dict[Any, str] = {}
    refunds: list[Any] = []
    for _, _, env, p in src.orders:
        if env.event_type == "OrderPaid":
            paid.setdefault(p.order_id, p)
            paid_event_ids[env.event_id] = p.order_id
        elif env.event_type == "OrderRefunded":
            refunds.append(p)
    plans = {v: plan for _, v, plan in src.plans.versions}
    accruals = {aid: a for aid, a in pub.accruals.items() if _in(period, a.paid_at)}
    checks: list[Check] = []

    # 1. levels
    by_level: dict[str, int] = {}
    bad = []
    for a in accruals.values():
        key = a.level if getattr(a, "kind", "commission") == "commission" else f"{a.level} management bonus"
        by_level[key] = by_level.get(key, 0) + 1
        if LEVEL_DEPTH.get(a.level, 99) > MAX_LEVELS:
            bad.append(f"order {a.order_id} line {a.line_id}: {a.beneficiary_id} paid at {a.level}")
    deepest = max((LEVEL_DEPTH.get(lv.split(" ")[0], 99) for lv in by_level), default=0)
    checks.append(Check("levels paid (never above 2)", not bad,
                        f"deepest level paid: {deepest}; " + ", ".join(f"{k} {v}" for k, v in sorted(by_level.items())), bad))

    # 2. share of sales per line
    lines: dict[tuple[str, str], list[Any]] = {}
    for a in accruals.values():
        lines.setdefault((a.order_id, a.line_id), []).append(a)
    bad, worst = [], 0.0
    for (oid, lid), accs in lines.items():
        base = accs[0].base_fen
        total = sum(a.amount_fen for a in accs)
        plan = plans.get(accs[0].plan_version)
        cap_bp = min(plan.cap_bp if plan is not None else HARD_CAP_BP, HARD_CAP_BP)
        if base > 0:
            worst = max(worst, total / base)
        if total * 10000 > cap_bp * base:
            bad.append(f"order {oid} line {lid}: {total} fen of {base} fen paid = {total / base:.2%} > cap {cap_bp / 100:g} %")
    checks.append(Check("commission share of sales per line (never above the cap)", not bad,
                        f"{len(lines)} lines; highest share {worst:.2%}; hard ceiling {HARD_CAP_BP / 100:g} %", bad))

    # 3. backed by a paid order
    bad = []
    for a in accruals.values():
        o = paid.get(a.order_id)
        line = next((l for l in o.lines if l.line_id == a.line_id), None) if o is not None else None
        if o is None:
            bad.append(f"order {a.order_id}: {a.amount_fen} fen to {a.beneficiary_id}, but the order was never paid")
        elif line is None:
            bad.append(f"order {a.order_id} line {a.line_id}: {a.amount_fen} fen to {a.beneficiary_id}, no such line was paid")
        elif line.paid_fen != a.base_fen or o.buyer_id != a.buyer_id:
            bad.append(f"order {a.order_id} line {a.line_id}: base {a.base_fen} fen / buyer {a.buyer_id} but the payment "
                       f"was {line.paid_fen} fen by {o.buyer_id}")
    for kind, events in (("reversal", pub.reversals.values()), ("settlement", pub.settlements.values())):
        for e in events:
            if e.accrual_id not in pub.accruals:
                bad.append(f"{kind} of unknown accrual {e.accrual_id}: {e.amount_fen} fen to {e.beneficiary_id}")
    checks.append(Check("payments not backed by a paid order (none)", not bad, f"{len(bad)} found", bad))

    # 4. recruitment alone
    bad = []
    for aid, a in accruals.items():
        cause = pub.causes.get(aid)
        if paid_event_ids.get(cause) != a.order_id:
            bad.append(f"accrual {aid}: {a.amount_fen} fen to {a.beneficiary_id} not caused by the payment of order {a.order_id}")
    for _, v, plan in src.plans.versions:
        for t in plan.tiers:
            extra = set(t.upgrade.thresholds()) - ALLOWED_THRESHOLDS if t.upgrade is not None else set()
            if extra:
                bad.append(f"plan version {v} tier {t.name}: thresholds {sorted(extra)} are not sales")
    checks.append(Check("rewards for recruitment alone (none)", not bad,
                        f"{len(accruals)} accruals each caused by an OrderPaid; {len(src.plans.versions)} plan versions "
                        "with sales-only tier thresholds" if not bad else f"{len(bad)} found", bad))

    # 5. refunds reversed
    by_line: dict[tuple[str, str], list[Any]] = {}
    for a in pub.accruals.values():
        by_line.setdefault((a.order_id, a.line_id), []).append(a)
    reversed_by: dict[str, int] = {}
    for r in pub.reversals.values():
        reversed_by[r.accrual_id] = reversed_by.get(r.accrual_id, 0) + r.amount_fen
    refunded: dict[tuple[str, str], int] = {}
    in_period: set[tuple[str, str]] = set()
    seen_refunds: set[tuple[str, str]] = set()
    for r in sorted(refunds, key=lambda r: r.refunded_at):
        if (r.order_id, r.out_refund_no) in seen_refunds:
            continue
        seen_refunds.add((r.order_id, r.out_refund_no))
        for l in r.lines:
            k = (r.order_id, l.line_id)
            refunded[k] = refunded.get(k, 0) + max(l.amount_fen, 0)
            if _in(period, r.refunded_at):
                in_period.add(k)
    bad, n = [], 0
    for k in sorted(in_period):
        for a in by_line.get(k, ()):
            n += 1
            want = reversal_amount(a.amount_fen, 0, a.base_fen, min(refunded[k], a.base_fen))
            got = reversed_by.get(a.accrual_id, 0)
            if got != want:
                bad.append(f"order {a.order_id} line {a.line_id}: {refunded[k]} of {a.base_fen} fen refunded, "
                           f"{a.beneficiary_id}'s {a.level} accrual of {a.amount_fen} fen reversed {got} fen, owed {want}")
    checks.append(Check("refunds reversed (all)", not bad, f"{len(in_period)} refunded lines, {n} accruals checked", bad))

    # 6. teams
    all_teams = teams(src, period[1])
    by_size = sorted(all_teams, key=lambda t: (-t.size, -t.depth, t.promoter_id))[:top]
    by_depth = sorted(all_teams, key=lambda t: (-t.depth, -t.size, t.promoter_id))[:top]
    orders_in = [o for o in paid.values() if _in(period, o.paid_at)]
    return Report(period, checks, by_size, by_depth, sum(1 for t in all_teams if t.at_threshold), len(orders_in),
                  sum(l.paid_fen for o in orders_in for l in o.lines), sum(a.amount_fen for a in accruals.values()))


# -- output ------------------------------------------------------------------------------------
def _period(r: Report) -> str:
    lo, hi = r.period
    return f"{lo.isoformat() if lo else 'start of the log'} .. {hi.isoformat() if hi else 'end of the log'}"


def text(r: Report, out: Any) -> None:
    print(f"compliance report, orders paid {_period(r)}: {r.orders} orders, sales {r.sales_fen} fen, "
          f"commission {r.commission_fen} fen", file=out)
    for c in r.checks:
        print(f"[{'PASS' if c.passed else 'FAIL'}] {c.name}: {c.value}", file=out)
        for f in c.findings[:20]:
            print(f"    {f}", file=out)
        if len(c.findings) > 20:
            print(f"    ... {len(c.findings) - 20} more in compliance.csv", file=out)
    print(f"teams at or above {TEAM_LEVELS} levels and {TEAM_PEOPLE} people: {r.teams_at_threshold}", file=out)
    for t in r.teams_by_size[:5]:
        print(f"    {t.promoter_id}: {t.size} people, {t.depth} levels{'  <- threshold' if t.at_threshold else ''}", file=out)


def checks_csv(r: Report) -> str:
    """compliance.csv: one row per check, then one per finding."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["check", "result", "value", "finding"])
    for c in r.checks:
        w.writerow([c.name, "pass" if c.passed else "fail", c.value, ""])
        for x in c.findings:
            w.writerow([c.name, "finding", "", x])
    return buf.getvalue()


def teams_csv(r: Report) -> str:
    """teams.csv: the largest teams by size and by depth."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["ranking", "promoter_id", "team_size", "team_depth", "at_threshold"])
    for name, rows in (("by_size", r.teams_by_size), ("by_depth", r.teams_by_depth)):
        for t in rows:
            w.writerow([name, t.promoter_id, t.size, t.depth, t.at_threshold])
    return buf.getvalue()


def write(r: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "compliance.csv", out_dir / "teams.csv", out_dir / "compliance.html"]
    for path, text_ in zip(paths, (checks_csv(r), teams_csv(r), html_report(r))):
        with path.open("w", newline="", encoding="utf-8") as f:
            f.write(text_)
    return paths


def html_report(r: Report) -> str:
    e = html.escape
    rows = []
    for c in r.checks:
        findings = "".join(f"<li>{e(x)}</li>" for x in c.findings[:200])
        more = f"<li>… {len(c.findings) - 200} more in compliance.csv</li>" if len(c.findings) > 200 else ""
        rows.append(f"<tr class=\"{'pass' if c.passed else 'fail'}\"><td>{e(c.name)}</td>"
                    f"<td>{'PASS' if c.passed else 'FAIL'}</td><td>{e(c.value)}"
                    + (f"<ul>{findings}{more}</ul>" if findings else "") + "</td></tr>")

    def team_rows(ts: list[Team]) -> str:
        out = []
        for t in ts:
            cls = ' class="fail"' if t.at_threshold else ""
            out.append(f"<tr{cls}><td>{e(t.promoter_id)}</td><td>{t.size}</td><td>{t.depth}</td>"
                       f"<td>{'yes' if t.at_threshold else ''}</td></tr>")
        return "".join(out)

    head = "<tr><th>promoter</th><th>people</th><th>levels</th><th>≥ 3 levels and ≥ 30 people</th></tr>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fenxiao compliance report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}}
tr.pass td:nth-child(2){{color:#060;font-weight:bold}}tr.fail td{{background:#fee}}tr.fail td:nth-child(2){{color:#a00;font-weight:bold}}</style>
</head><body>
<h1>Compliance report</h1>
<p>Orders paid {e(_period(r))}: <b>{r.orders}</b> orders, sales <b>{r.sales_fen / 100:,.2f}</b> yuan,
commission <b>{r.commission_fen / 100:,.2f}</b> yuan. Overall: <b>{'PASS' if r.passed else 'FAIL'}</b>.</p>
<table><tr><th>check</th><th>result</th><th>detail</th></tr>{''.join(rows)}</table>
<h2>Largest teams</h2>
<p>Teams through the bindings in force at the end of the period. {r.teams_at_threshold} at or above the
pyramid-selling thresholds ({TEAM_LEVELS} levels and {TEAM_PEOPLE} people); commission is paid on two levels only.</p>
<h3>By size</h3><table>{head}{team_rows(r.teams_by_size)}</table>
<h3>By depth</h3><table>{head}{team_rows(r.teams_by_depth)}</table>
</body></html>
"""
