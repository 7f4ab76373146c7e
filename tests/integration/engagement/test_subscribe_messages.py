"""Subscribe messages: sent only while the promoter has an unused one-time subscription the
system counted, never twice for one event, within WeChat's field limits (the stand-in checks
them as WeChat does and answers its error codes)."""
from __future__ import annotations

import re

import pytest

from tests.conftest import eventually
from tests.integration.engagement.conftest import TEMPLATE, outbox_events, uid

pytestmark = pytest.mark.integration

FIELDS = {"thing1": "title", "amount2": "amount", "time3": "time", "phrase4": "status"}


async def configure(svc, kind: str = "commission_accrued", template_id: str = TEMPLATE, fields=None) -> None:
    r = await svc.client.put(f"/v1/admin/notice-templates/{kind}", headers=svc.admin(),
                             json={"template_id": template_id, "page": "pages/earnings/index?tab=notices",
                                   "fields": fields or FIELDS})
    assert r.status_code == 200, r.text


async def report(svc, promoter: str, openid: str, key: str, *templates: str) -> list[dict]:
    r = await svc.client.post("/v1/me/subscriptions", headers=svc.who(promoter, openid=openid),
                              json={"accepted": list(templates or [TEMPLATE]), "openid": openid, "idempotency_key": key})
    assert r.status_code == 200, r.text
    return r.json()


async def sends(svc, promoter: str) -> list[dict]:
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch("SELECT notice_id, state, errcode, data FROM subscribe_sends WHERE promoter_id = $1 ORDER BY notice_id", promoter)
    return [dict(r) for r in rows]


async def notices(svc, promoter: str) -> list[dict]:
    return (await svc.client.get("/v1/me/notices", headers=svc.who(promoter))).json()["items"]


async def test_a_message_is_sent_only_with_an_unused_subscription_and_never_twice_for_one_event(make_svc, events, wechat):
    promoter, openid = uid("p"), uid("openid")
    async with make_svc() as svc:
        await configure(svc)
        # the user tapped "allow" once (WeChat's side) and the mini-program reported it (ours), twice
        wechat.subscribe(openid, TEMPLATE)
        assert await report(svc, promoter, openid, "k1") == [{"template_id": TEMPLATE, "accepted": 1, "used": 0, "remaining": 1}]
        assert (await report(svc, promoter, openid, "k1"))[0]["accepted"] == 1  # a repeated report counts once

        first = await events.accrue(promoter, 123456)
        await eventually(lambda: _delivered(wechat, openid, 1))
        await events.send(env=first)                 # the same event again (at-least-once transport)
        second = await events.accrue(promoter, 50)   # no subscription left: notice yes, message no
        await eventually(lambda: _count(notices(svc, promoter), 2))

        [msg] = wechat.delivered
        assert msg["touser"] == openid and msg["template_id"] == TEMPLATE
        assert msg["page"] == "pages/earnings/index?tab=notices"
        assert msg["data"]["amount2"] == "1234.56元" and msg["data"]["phrase4"] == "待结算"
        assert len(msg["data"]["thing1"]) <= 20 and re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", msg["data"]["time3"])
        rows = await eventually(lambda: _states(svc, promoter, {"sent"}))  # recorded after WeChat answered
        assert [(r["state"], r["errcode"]) for r in rows] == [("sent", 0)]
        sub = (await svc.client.get("/v1/me/subscriptions", headers=svc.who(promoter))).json()
        assert sub == [{"template_id": TEMPLATE, "accepted": 1, "used": 1, "remaining": 0}]
        recorded = await eventually(lambda: _outbox(svc, "SubscribeMessageSent", 1))
        assert recorded[0]["payload"]["source_event_id"] == str(first.event_id)
        assert str(second.event_id) not in {e["payload"]["source_event_id"] for e in recorded}


async def test_wechat_refusing_for_no_quota_is_recorded_and_the_count_believes_it(make_svc, events, wechat):
    promoter, openid = uid("p"), uid("openid")
    async with make_svc() as svc:
        await configure(svc)
        # reported twice, but the user's accept never reached WeChat: 43101
        await report(svc, promoter, openid, "a")
        await report(svc, promoter, openid, "b")
        await events.accrue(promoter, 300)
        rows = await eventually(lambda: _states(svc, promoter, {"refused"}))
        assert rows[0]["errcode"] == 43101 and wechat.delivered == []
        sub = (await svc.client.get("/v1/me/subscriptions", headers=svc.who(promoter))).json()
        assert sub[0]["remaining"] == 0                     # WeChat says none left: no further tries
        await events.accrue(promoter, 301)
        await eventually(lambda: _count(notices(svc, promoter), 2))
        assert len(await sends(svc, promoter)) == 1
        assert [c["errcode"] for c in wechat.calls("/cgi-bin/message/subscribe/send")] == [43101]


async def test_a_refused_token_is_fetched_again_and_the_message_sent_once(make_svc, events, wechat):
    promoter, openid = uid("p"), uid("openid")
    async with make_svc() as svc:
        await configure(svc)
        wechat.subscribe(openid, TEMPLATE, times=2)
        await report(svc, promoter, openid, "a")
        await report(svc, promoter, openid, "b")
        await events.accrue(promoter, 10)
        await eventually(lambda: _delivered(wechat, openid, 1))
        wechat.expire_current_token()
        await events.accrue(promoter, 20)
        await eventually(lambda: _delivered(wechat, openid, 2))
        assert [c["errcode"] for c in wechat.calls("/cgi-bin/message/subscribe/send")] == [0, 42001, 0]
        assert [m["data"]["amount2"] for m in wechat.delivered] == ["0.10元", "0.20元"]


async def test_an_operator_cannot_save_a_template_wechat_would_refuse(make_svc):
    async with make_svc() as svc:
        for fields in ({"thing1": "amount"}, {"amount1": "title"}, {"bogus1": "title"}, {"time1": "nothing"}):
            r = await svc.client.put("/v1/admin/notice-templates/commission_accrued", headers=svc.admin(),
                                     json={"template_id": TEMPLATE, "fields": fields})
            assert r.status_code == 422 and r.json()["code"] == "bad_template", (fields, r.text)
        r = await svc.client.put("/v1/admin/notice-templates/nope", headers=svc.admin(),
                                 json={"template_id": TEMPLATE, "fields": FIELDS})
        assert r.status_code == 422
        r = await svc.client.put("/v1/admin/notice-templates/commission_accrued", headers=svc.who("promoter-x"),
                                 json={"template_id": TEMPLATE, "fields": FIELDS})
        assert r.status_code == 403


async def _delivered(wechat, openid: str, n: int):
    got = [m for m in wechat.delivered if m["touser"] == openid]
    return got if len(got) >= n else None


async def _count(coro, n: int):
    items = await coro
    return items if len(items) >= n else None


async def _outbox(svc, event_type: str, n: int):
    got = await outbox_events(svc, event_type)
    return got if len(got) >= n else None


async def _states(svc, promoter: str, states: set[str]):
    rows = await sends(svc, promoter)
    return rows if rows and all(r["state"] in states for r in rows) else None
