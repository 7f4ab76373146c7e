"""The reference data's in-memory layout (domain.chain.History): one string per promoter id,
one-row timelines sized to one row, and the same answers as before whatever the arrival order."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from services.commission.domain.chain import History

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def fresh(s: str) -> str:
    return "".join(list(s))  # a distinct string object, as each database row brings its own


def test_promoter_ids_are_shared_and_single_rows_take_a_list_of_one():
    h = History()
    for i in range(50):
        h.add_binding(f"c{i}", T0 + timedelta(minutes=i), i + 1, fresh("promoter-1"))
    h.add_status(fresh("promoter-1"), T0, 1, fresh("active"), None)
    ids = {id(rows[0][2]) for rows in h.bindings.values()}
    assert len(ids) == 1
    (only,) = ids
    assert id(next(iter(h.statuses))) == only  # the status timeline's key is that same object
    rows = h.bindings["c7"]
    assert rows == [(T0 + timedelta(minutes=7), 8, "promoter-1")]
    assert rows.__sizeof__() == [rows[0]].__sizeof__()  # no room reserved for rows that never come


def test_answers_do_not_depend_on_arrival_order():
    rng = random.Random(7)
    rows = [(f"c{rng.randrange(5)}", T0 + timedelta(hours=rng.randrange(48)), seq, f"p{rng.randrange(4)}")
            for seq in range(1, 200)]
    statuses = [(f"p{rng.randrange(4)}", T0 + timedelta(hours=rng.randrange(48)), seq,
                 rng.choice(["active", "suspended", "revoked"])) for seq in range(1, 60)]
    in_order, shuffled = History(), History()
    for c, t, seq, p in rows:
        in_order.add_binding(c, t, seq, p)
    for p, t, seq, st in statuses:
        in_order.add_status(p, t, seq, st, None)
    rng.shuffle(rows)
    rng.shuffle(statuses)
    for c, t, seq, p in rows:
        shuffled.add_binding(c, t, seq, fresh(p))
    for p, t, seq, st in statuses:
        shuffled.add_status(fresh(p), t, seq, fresh(st), None)
    assert shuffled.bindings == in_order.bindings and shuffled.statuses == in_order.statuses
    for hour in range(-1, 50):
        t = T0 + timedelta(hours=hour, minutes=30)
        for c in range(5):
            assert shuffled.referrer_at(f"c{c}", t) == in_order.referrer_at(f"c{c}", t)
        for p in range(4):
            assert shuffled.status_at(f"p{p}", t) == in_order.status_at(f"p{p}", t)
