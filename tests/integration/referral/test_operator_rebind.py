"""Operators' console support in referral: search promoters, see a team with ids, and change a
customer's referrer only with a reason that travels in the event (source "operator")."""
from __future__ import annotations

import pytest

from tests.integration.referral.conftest import bind, enrol, outbox_events

pytestmark = pytest.mark.integration


async def test_referrer_change_needs_a_reason_refuses_cycles_and_emits_the_reason(make_svc, ids, db_conn, fresh_schema):
    async with make_svc() as svc:
        a, b, c = ids("pa"), ids("pb"), ids("cust")
        code_a = await enrol(svc, a, "甲")
        await enrol(svc, b, "乙")
        assert (await bind(svc, c, code_a)).status_code == 200
        assert (await bind(svc, b, code_a)).status_code == 200  # b is under a

        url = f"/v1/admin/customers/{c}/referrer"
        r = await svc.client.post(url, json={"promoter_id": b}, headers=svc.admin())
        assert r.status_code == 422  # no reason at all
        r = await svc.client.post(url, json={"promoter_id": b, "reason": " "}, headers=svc.admin())
        assert (r.status_code, r.json()["code"]) == (422, "reason_required"), r.text
        r = await svc.client.post(f"/v1/admin/customers/{a}/referrer", json={"promoter_id": b, "reason": "客服工单 17"},
                                  headers=svc.admin())
        assert (r.status_code, r.json()["code"]) == (409, "cycle")  # a is above b
        r = await svc.client.post(url, json={"promoter_id": a, "reason": "客服工单 17"}, headers=svc.admin())
        assert (r.status_code, r.json()["code"]) == (409, "rebind_unchanged")
        r = await svc.client.post(url, json={"promoter_id": b, "reason": "客服工单 17"}, headers=svc.who(ids("x")))
        assert r.status_code == 403

        svc.clock.advance(seconds=5)
        r = await svc.client.post(url, json={"promoter_id": b, "reason": "客服工单 17: 分享被误记"}, headers=svc.admin())
        assert r.status_code == 200, r.text
        assert (r.json()["promoter_id"], r.json()["source"]) == (b, "operator")

        hist = (await svc.client.get(f"/v1/admin/customers/{c}/bindings", headers=svc.admin())).json()
        assert [(h["promoter_id"], h["superseded_at"] is None) for h in hist] == [(a, False), (b, True)]
        taken = [e for e in await outbox_events(db_conn, fresh_schema, "ReferralTakenOver")
                 if e["payload"]["customer_id"] == c]
        assert len(taken) == 1
        p = taken[0]["payload"]
        assert (p["previous_promoter_id"], p["promoter_id"], p["source"], p["reason"], p["changed_by"]) == \
            (a, b, "operator", "客服工单 17: 分享被误记", "operator-1")

        # a customer with no referrer gets one (ReferralBound, with the reason)
        d = ids("new")
        r = await svc.client.post(f"/v1/admin/customers/{d}/referrer", json={"promoter_id": a, "reason": "线下推荐补录"},
                                  headers=svc.admin())
        assert r.status_code == 200, r.text
        bound = [e["payload"] for e in await outbox_events(db_conn, fresh_schema, "ReferralBound")
                 if e["payload"]["customer_id"] == d]
        assert [(x["source"], x["reason"]) for x in bound] == [("operator", "线下推荐补录")]


async def test_promoter_search_and_admin_team(make_svc, ids):
    async with make_svc() as svc:
        a, c = ids("pa"), ids("cust")
        code_a = await enrol(svc, a, "王小明")
        await bind(svc, c, code_a)
        found = (await svc.client.get("/v1/admin/promoters", params={"q": "小明"}, headers=svc.admin())).json()
        assert [(p["user_id"], p["team_size"], p["nickname"]) for p in found] == [(a, 1, "王小明")]
        assert (await svc.client.get("/v1/admin/promoters", params={"q": code_a}, headers=svc.admin())).json()[0]["user_id"] == a
        team = (await svc.client.get(f"/v1/admin/promoters/{a}/team", headers=svc.admin())).json()
        assert team["total"] == 1 and team["items"][0]["customer_id"] == c
        assert (await svc.client.get("/v1/admin/promoters", headers=svc.who(c))).status_code == 403
