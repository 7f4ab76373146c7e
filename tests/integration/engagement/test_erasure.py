"""Erasure in engagement: an operator clears a promoter's nickname (the boards show them masked as
`*`) and drops their subscribe-message openids; earnings and ranks stay; others are refused."""
from __future__ import annotations

from datetime import timedelta

import pytest

from shared.contracts.referral import PromoterEnrolled
from tests.conftest import eventually
from tests.integration.engagement.conftest import uid
from tests.integration.engagement.test_boards_and_honours import MONDAY, board

pytestmark = pytest.mark.integration


async def test_an_operator_erases_the_nickname_and_openids_and_the_ranks_stay(make_svc, events):
    a = uid("a")
    async with make_svc() as svc:
        await events.send(PromoterEnrolled(promoter_id=a, promoter_code="codeE1", enrolled_by="everyone", nickname_masked="王**",
                                           enrolled_at=MONDAY - timedelta(days=30)))
        await events.settle(a, 20_000, at=MONDAY + timedelta(hours=1))

        async def named():
            w = await board(svc, a, "week", MONDAY + timedelta(days=1))
            return w if w["top"] and w["top"][0]["nickname"] == "王**" else None
        await eventually(named, timeout=60)
        async with svc.pool.acquire() as conn:
            await conn.execute("INSERT INTO subscriptions (promoter_id, template_id, openid, accepted) VALUES ($1, 'tpl', 'openid-x', 1)", a)

        erase = lambda headers: svc.client.post(f"/v1/admin/persons/{a}/erase", json={"reason": "account deleted"},  # noqa: E731
                                                headers=headers)
        assert (await erase(svc.who("aud-1", "auditor"))).status_code == 403
        r = await erase(svc.admin())
        assert r.status_code == 200 and (r.json()["nicknames_cleared"], r.json()["subscriptions_deleted"]) == (1, 1), r.text
        w = await board(svc, a, "week", MONDAY + timedelta(days=1))
        assert [(x["rank"], x["nickname"], x["score"]) for x in w["top"]] == [(1, "*", 20_000)]
        async with svc.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM subscriptions WHERE promoter_id = $1", a) == 0
            assert await conn.fetchval("SELECT erased_by FROM personal_data_erasures WHERE person_id = $1", a) == "operator-1"
            # the log still holds the enrolment: folding it again (a rebuild) does not bring the name back
            from services.engagement.store import facts
            await facts.set_nickname(conn, a, "王**")
            assert await conn.fetchval("SELECT nickname FROM promoters WHERE promoter_id = $1", a) is None
            await facts.set_nickname(conn, "someone-" + a, "李*")
            assert await conn.fetchval("SELECT nickname FROM promoters WHERE promoter_id = $1", "someone-" + a) == "李*"
