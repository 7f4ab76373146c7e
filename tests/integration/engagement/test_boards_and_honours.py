"""Leaderboards at Asia/Shanghai week boundaries; honours awarded once, even on replay."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from shared.contracts.referral import PromoterEnrolled
from tests.conftest import eventually
from tests.integration.engagement.conftest import outbox_events, uid

pytestmark = pytest.mark.integration

# Monday 2025-03-10 00:00 in Shanghai is Sunday 2025-03-09 16:00 UTC
MONDAY = datetime(2025, 3, 9, 16, 0, tzinfo=timezone.utc)


async def board(svc, who: str, period: str, at: datetime, metric: str = "settled", top: int | None = None) -> dict:
    params = {"at": at.isoformat(), "metric": metric}
    if top:
        params["top"] = top
    r = await svc.client.get(f"/v1/leaderboards/{period}", params=params, headers=svc.who(who))
    assert r.status_code == 200, r.text
    return r.json()


async def test_weekly_ranks_are_right_across_the_monday_boundary_in_shanghai(make_svc, events):
    a, b, c = uid("a"), uid("b"), uid("c")
    async with make_svc() as svc:
        await events.send(PromoterEnrolled(promoter_id=a, promoter_code="codeA1", enrolled_by="everyone", nickname_masked="张**",
                                           enrolled_at=MONDAY - timedelta(days=30)))
        await events.send(PromoterEnrolled(promoter_id=b, promoter_code="codeB1", enrolled_by="everyone", nickname_masked="李*",
                                           enrolled_at=MONDAY - timedelta(days=30)))
        # a: Sunday 23:59:59 Shanghai (last week); b and c: Monday 00:00:00 and later (this week)
        await events.settle(a, 50_000, at=MONDAY - timedelta(seconds=1))
        await events.settle(b, 30_000, at=MONDAY)
        await events.settle(c, 10_000, at=MONDAY + timedelta(hours=3))
        await events.settle(c, 5_000, at=MONDAY + timedelta(days=7))  # next Monday: next week
        # new customers who bought: b's first buyer on Sunday night, second on Monday
        await events.accrue(b, 10, buyer="cust-1", at=MONDAY - timedelta(minutes=5))
        await events.accrue(b, 10, buyer="cust-2", at=MONDAY + timedelta(minutes=5))
        await events.accrue(b, 10, buyer="cust-2", at=MONDAY + timedelta(minutes=6))  # not new the second time

        async def this_week():
            w = await board(svc, c, "week", MONDAY + timedelta(days=2))
            return w if w["participants"] == 2 else None
        week = await eventually(this_week, timeout=60)
        assert week["label"] == "2025-W11" and week["start"].startswith("2025-03-09T16:00:00")
        assert [(r["rank"], r["nickname"], r["score"]) for r in week["top"]] == [(1, "李*", 30_000), (2, "*", 10_000)]
        assert week["mine"] == {"rank": 2, "nickname": "*", "score": 10_000, "me": True}

        async def last_week():  # a's events are on another partition than b's and c's
            w = await board(svc, a, "week", MONDAY - timedelta(seconds=1))
            return w if w["top"] and w["top"][0]["nickname"] == "张**" else None
        last = await eventually(last_week)
        assert last["label"] == "2025-W10"
        assert [(r["rank"], r["nickname"], r["score"], r["me"]) for r in last["top"]] == [(1, "张**", 50_000, True)]

        # top 1 only: c sees b on top and their own rank below it
        narrow = await board(svc, c, "week", MONDAY, top=1)
        assert [r["score"] for r in narrow["top"]] == [30_000] and narrow["mine"]["rank"] == 2

        async def customers():
            w = await board(svc, b, "week", MONDAY, metric="new_customers")
            return w if w["top"] else None
        w = await eventually(customers)
        assert [(r["score"], r["me"]) for r in w["top"]] == [(1, True)]
        prev = await board(svc, b, "week", MONDAY - timedelta(days=1), metric="new_customers")
        assert [r["score"] for r in prev["top"]] == [1]

        async def whole_month():  # c's settlement of the next Monday may still be on its way
            m = await board(svc, b, "month", MONDAY)
            return m if [r["score"] for r in m["top"]][:3] == [50_000, 30_000, 15_000] else None
        month = await eventually(whole_month)
        assert month["label"] == "2025-03" and month["mine"]["rank"] == 2


async def test_an_honour_is_awarded_once_even_on_replay(make_svc, events, fresh_schema, infra):
    from shared.db import drop_schema

    p = uid("p")
    async with make_svc() as svc:
        origin = svc.origin
        r = await svc.client.post("/v1/admin/honour-rules", headers=svc.admin(),
                                  json={"rule_id": "three_sales", "title": "三单达人", "metric": "sales", "threshold": 3})
        assert r.status_code == 201
        first = await events.accrue(p, 100)
        await events.send(env=first)                       # redelivered
        await events.settle(p, 6_000)
        await events.settle(p, 6_000)                      # 120 yuan settled: the ¥100 milestone, once
        await events.accrue(p, 100)
        await events.accrue(p, 100)                        # third sale: the operator's milestone
        await events.accrue(p, 100)

        async def profile():
            r = await svc.client.get("/v1/me/profile", headers=svc.who(p))
            keys = [h["honour_key"] for h in r.json()["honours"]]
            return keys if len(keys) >= 3 else None
        keys = await eventually(profile, timeout=60)
        assert sorted(keys) == ["first_sale", "op:three_sales", "settled_100_yuan"]
        awarded = [e for e in await outbox_events(svc, "HonourAwarded") if e["payload"]["promoter_id"] == p]
        assert sorted(e["payload"]["honour_key"] for e in awarded) == sorted(keys)
        notices = (await svc.client.get("/v1/me/notices", headers=svc.who(p))).json()["items"]
        assert sum(n["kind"] == "honour_awarded" for n in notices) == 3

    # replay the whole log into a fresh schema: the same honours, each once
    replica = "t_" + fresh_schema[2:][::-1]
    try:
        async with make_svc(schema=replica, origin=origin) as again:
            r = await again.client.post("/v1/admin/honour-rules", headers=again.admin(),
                                        json={"rule_id": "three_sales", "title": "三单达人", "metric": "sales", "threshold": 3})
            assert r.status_code == 201

            async def rebuilt():
                r = await again.client.get("/v1/me/profile", headers=again.who(p))
                keys = [h["honour_key"] for h in r.json()["honours"]]
                return keys if "settled_100_yuan" in keys else None
            keys = await eventually(rebuilt, timeout=60)
            # the operator's rule was defined after the replica had started reading, so it may award
            # from a later event or not at all; the built-in honours are rebuilt exactly
            assert {"first_sale", "settled_100_yuan"} <= set(keys) <= {"first_sale", "op:three_sales", "settled_100_yuan"}
            again_awarded = [e for e in await outbox_events(again, "HonourAwarded") if e["payload"]["promoter_id"] == p]
            assert len(again_awarded) == len(keys)
            # the ids are derived from (promoter, honour): a downstream consumer drops a replay's repeats
            assert {e["event_id"] for e in again_awarded} <= {e["event_id"] for e in awarded}
    finally:
        await drop_schema(infra["db"], replica)


async def test_the_months_top_is_honoured_when_the_next_month_begins_in_shanghai(make_svc, events):
    # 2024-06-01 00:00 in Shanghai is 2024-05-31 16:00 UTC
    june = datetime(2024, 5, 31, 16, 0, tzinfo=timezone.utc)
    may = [uid("may") for _ in range(3)]
    nxt, late = uid("june"), uid("late")
    async with make_svc(top_n_of_month=2) as svc:
        for i, p in enumerate(may):
            await events.settle(p, 10_000 * (i + 1), at=june - timedelta(days=3))
        await events.settle(may[0], 1, at=june - timedelta(seconds=1))   # still May (23:59:59 +08)
        await events.settle(nxt, 99_999, at=june)                         # June: May closes

        async def month_honours() -> dict[str, list[str]]:
            out = {}
            for p in may + [nxt, late]:
                r = await svc.client.get("/v1/me/profile", headers=svc.who(p))
                assert r.status_code == 200, r.text
                out[p] = [h["honour_key"] for h in r.json()["honours"] if h["honour_key"].startswith("top10_month")]
            return out

        # the top 2 of May by settled commission: may[2] (30000) and may[1] (20000). Wait for that
        # whole state, not the first honour seen: the profiles are read one by one, so a read between
        # two awards would otherwise see one honoured and the other not yet (a wrong award or a
        # missing one never matches, and the timeout reports the last state read)
        expected = {may[0]: [], may[1]: ["top10_month:2024-05"], may[2]: ["top10_month:2024-05"], nxt: [], late: []}

        async def honoured():
            got = await month_honours()
            return got if got == expected else None
        await eventually(honoured, timeout=60)

        # a May settlement read after May closed changes no award (an honour is never taken back or re-decided)
        await events.settle(late, 500_000, at=june - timedelta(days=1))
        await events.settle(nxt, 1, at=june + timedelta(days=1))

        async def late_seen():
            r = await svc.client.get("/v1/leaderboards/month", params={"at": (june - timedelta(days=1)).isoformat()},
                                     headers=svc.who(late))
            return r.json() if r.json()["mine"] else None
        board = await eventually(late_seen)
        assert board["mine"]["rank"] == 1
        r = await svc.client.get("/v1/me/profile", headers=svc.who(late))
        assert [h for h in r.json()["honours"] if h["honour_key"].startswith("top10")] == []
        # and May's awards are as they were, for everyone (none taken back, none added)
        assert await month_honours() == expected
