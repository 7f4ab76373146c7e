"""Hostile input at referral: refused binds cannot grow storage or the topic, binds and posters
are rate limited per user and per address (429 with Retry-After), and image bombs are refused."""
from __future__ import annotations

import base64

import pytest

from tests.integration.referral.test_bindings import bind, enrol, outbox_events
from tests.unit.shared.test_limits import _png_header

pytestmark = pytest.mark.integration


async def test_refused_binds_are_counted_but_only_the_first_few_are_stored_and_announced(make_svc, ids, db_conn,
                                                                                        fresh_schema):
    async with make_svc() as svc:
        a = ids("a")
        code_a = await enrol(svc, a)
        for _ in range(20):   # a self-binding spammer
            r = await bind(svc, a, code_a)
            assert (r.status_code, r.json()["code"]) == (422, "self_binding")
        for n in range(20):   # random codes: all "unknown promoter", one bucket
            r = await bind(svc, a, f"NoSuchCode{n:04d}")
            assert r.json()["code"] == "unknown_promoter"
    stored = await db_conn.fetch(f"SELECT reason, count(*) AS n FROM {fresh_schema}.binding_refusals GROUP BY reason")
    assert {r["reason"]: r["n"] for r in stored} == {"self_binding": 3, "unknown_promoter": 3}
    events = [e["payload"]["reason"] for e in await outbox_events(db_conn, fresh_schema, "BindingRefused")]
    assert sorted(events) == ["self_binding"] * 3 + ["unknown_promoter"] * 3
    counted = await db_conn.fetch(f"SELECT reason, refusals FROM {fresh_schema}.binding_refusal_counts")
    assert {r["reason"]: r["refusals"] for r in counted} == {"self_binding": 20, "unknown_promoter": 20}


async def test_binds_are_rate_limited_per_user_and_per_address(make_svc, ids, monkeypatch):
    monkeypatch.setenv("FENXIAO_RATE_LIMITS", "on")
    monkeypatch.setenv("FENXIAO_RATE_BIND_USER", "2/min,2")
    monkeypatch.setenv("FENXIAO_RATE_BIND_IP", "6/min,5")
    async with make_svc() as svc:
        p, c = ids("p"), ids("c")
        code = await enrol(svc, p)
        answers = [(await bind(svc, c, code)).status_code for _ in range(3)]
        assert answers[:2] == [200, 200]
        r = await bind(svc, c, code)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1, r.text
        assert r.json()["detail"]["code"] == "rate_limited"
        # other users from the same address: the address bucket (5) runs out too
        others = [(await bind(svc, ids(f"o{i}"), code)).status_code for i in range(4)]
        assert others.count(429) >= 1 and 200 in others
        # promoters' posters and other routes are not bind's budget
        assert (await svc.client.get("/v1/promoters/me", headers=svc.who(p))).status_code == 200


async def test_an_image_bomb_is_refused_with_422_not_decoded(make_svc, ids):
    async with make_svc() as svc:
        bomb = base64.b64encode(_png_header(20000, 20000)).decode()
        r = await svc.client.put("/v1/admin/products/bomb", headers=svc.admin(),
                                 json={"title": "t", "price_fen": 100, "image_base64": bomb})
        assert (r.status_code, r.json()["code"]) == (422, "image_refused"), r.text
        p = ids("p")
        await enrol(svc, p)
        r = await svc.client.post("/v1/posters", headers=svc.who(p),
                                  json={"title": "t", "price_fen": 100, "image_base64": bomb})
        assert (r.status_code, r.json()["code"]) == (422, "image_refused"), r.text
        r = await svc.client.post("/v1/bindings", headers=svc.who(p), json={"promoter_code": "a\u0000b"})
        assert r.status_code == 422
