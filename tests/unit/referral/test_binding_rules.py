"""The binding rule, case by case and as properties over any sequence of binds."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from services.referral.domain.binding import (
    Bind, BindRequest, CurrentBinding, Policy, Refuse, TakeOver, Unchanged, decide, window_open,
)
from services.referral.domain.promoters import Promoter

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def promoter(uid: str, status: str = "active", until: datetime | None = None) -> Promoter:
    return Promoter(user_id=uid, code=f"code{uid}", status=status, enrolled_by="everyone", enrolled_at=NOW,  # type: ignore[arg-type]
                    suspended_until=until)


def req(customer="c", p: Promoter | None = None, current=None, ancestors=(), new=True) -> BindRequest:
    return BindRequest(customer_id=customer, promoter=p if p is not None else promoter("a"), current=current,
                       promoter_ancestors=tuple(ancestors), customer_is_new=new)


def test_unknown_self_and_inactive_are_refused():
    assert decide(BindRequest("c", None, None, (), True), Policy(), NOW) == Refuse("unknown_promoter", "no promoter has this code")
    assert decide(req(customer="a"), Policy(), NOW).reason == "self_binding"  # type: ignore[union-attr]
    assert decide(req(p=promoter("a", "revoked")), Policy(), NOW).reason == "inactive_promoter"  # type: ignore[union-attr]
    assert decide(req(p=promoter("a", "suspended")), Policy(), NOW).reason == "inactive_promoter"  # type: ignore[union-attr]


def test_a_lapsed_temporary_suspension_binds_again():
    suspended = promoter("a", "suspended", until=NOW)
    assert decide(req(p=suspended), Policy(), NOW - timedelta(seconds=1)).reason == "inactive_promoter"  # type: ignore[union-attr]
    assert decide(req(p=suspended), Policy(), NOW) == Bind("a")


def test_first_touch_keeps_the_first_promoter_forever():
    cur = CurrentBinding("b", NOW - timedelta(days=3650))
    assert decide(req(current=cur), Policy("first_touch"), NOW).reason == "already_bound"  # type: ignore[union-attr]
    assert decide(req(current=CurrentBinding("a", NOW)), Policy("first_touch"), NOW) == Unchanged("a")


def test_protection_window_boundary():
    cur = CurrentBinding("b", NOW - timedelta(days=7))
    assert window_open(cur, 7, NOW)
    assert not window_open(cur, 7, NOW - timedelta(microseconds=1))
    assert decide(req(current=cur), Policy("first_touch_window", 7), NOW) == TakeOver("a", "b")
    assert decide(req(current=cur), Policy("first_touch_window", 8), NOW).reason == "already_bound"  # type: ignore[union-attr]


def test_last_touch_takes_over_at_once():
    assert decide(req(current=CurrentBinding("b", NOW)), Policy("last_touch"), NOW) == TakeOver("a", "b")


def test_new_users_only():
    assert decide(req(new=True), Policy("new_users_only"), NOW) == Bind("a")
    assert decide(req(new=False), Policy("new_users_only"), NOW).reason == "not_new_user"  # type: ignore[union-attr]
    assert decide(req(current=CurrentBinding("b", NOW), new=False), Policy("new_users_only"), NOW).reason == "already_bound"  # type: ignore[union-attr]


def test_cycle_is_found_at_any_depth():
    # c is far up a's chain: a -> x1 -> x2 -> ... -> c
    deep = [f"x{i}" for i in range(50)] + ["c"]
    assert decide(req(ancestors=deep), Policy(), NOW).reason == "cycle"  # type: ignore[union-attr]
    assert decide(req(ancestors=deep, current=CurrentBinding("b", NOW)), Policy("last_touch"), NOW).reason == "cycle"  # type: ignore[union-attr]
    assert decide(req(ancestors=["x", "y"]), Policy(), NOW) == Bind("a")


# -- properties ------------------------------------------------------------------------------
USERS = [f"u{i}" for i in range(6)]


def ancestors(graph: dict[str, tuple[str, datetime]], who: str) -> tuple[str, ...]:
    out, seen = [], set()
    while who in graph and who not in seen:
        seen.add(who)
        who = graph[who][0]
        out.append(who)
    return tuple(out)


def has_cycle(graph: dict[str, tuple[str, datetime]]) -> bool:
    for start in graph:
        seen, who = set(), start
        while who in graph:
            if who in seen:
                return True
            seen.add(who)
            who = graph[who][0]
    return False


bind_step = st.tuples(st.sampled_from(USERS), st.sampled_from(USERS + [None]), st.integers(0, 40),
                      st.sampled_from(["active", "active", "active", "suspended", "revoked"]))


@settings(max_examples=300, deadline=None)
@given(mode=st.sampled_from(["first_touch", "first_touch_window", "new_users_only", "last_touch"]),
       window=st.integers(1, 30), steps=st.lists(bind_step, max_size=60))
def test_no_sequence_of_binds_makes_a_cycle_or_a_self_binding(mode, window, steps):
    policy = Policy(mode, window)  # type: ignore[arg-type]
    graph: dict[str, tuple[str, datetime]] = {}
    seen: set[str] = set()
    now = NOW
    for customer, promoter_id, days, status in steps:
        now += timedelta(days=days)
        p = promoter(promoter_id, status) if promoter_id else None
        cur = CurrentBinding(*graph[customer]) if customer in graph else None
        d = decide(BindRequest(customer, p, cur, ancestors(graph, promoter_id) if promoter_id else (), customer not in seen),
                   policy, now)
        seen.add(customer)
        before = graph.get(customer)
        if isinstance(d, (Bind, TakeOver)):
            assert p is not None and p.is_active(now)
            if isinstance(d, Bind):
                assert before is None
            else:
                assert before is not None and mode in ("last_touch", "first_touch_window")
                if mode == "first_touch_window":
                    assert now >= before[1] + timedelta(days=window)
            graph[customer] = (d.promoter_id, now)
        elif isinstance(d, Unchanged):
            assert before is not None and before[0] == d.promoter_id
        else:
            assert isinstance(d, Refuse)
        assert all(c != p_ for c, (p_, _) in graph.items()), "self-binding"
        assert not has_cycle(graph), f"cycle after {customer} -> {promoter_id}"
        if mode in ("first_touch", "new_users_only") and before is not None:
            assert graph[customer] == before, "first touch moved"
