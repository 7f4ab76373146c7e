"""The stand-in's subscribeMessage.send refuses what WeChat refuses, with WeChat's codes;
the engagement client gets the token through the shared stable_token handling."""
from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from services.engagement.clients.wechat import SubscribeClient
from shared.wechat import StableToken
from standins.wechat.miniprogram import MiniProgramState, make_router

BASE = "http://wechat.standin"
GOOD = {"thing1": {"value": "新佣金 ¥12.34"}, "amount2": {"value": "12.34元"}, "time3": {"value": "2026-12-01 22:30"}}


@pytest.fixture
def wx():
    state = MiniProgramState(appid="wxappid", secret="s3cret")
    state.add_template("T1", "thing1", "amount2", "time3")
    app = FastAPI()
    app.include_router(make_router(state))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    client = SubscribeClient(StableToken("wxappid", "s3cret", http, api_base=BASE), http, api_base=BASE)
    return state, client


async def test_a_message_needs_a_subscription_and_uses_it(wx):
    state, client = wx
    assert await client.send(touser="oUser1", template_id="T1", page="pages/index/index", data=GOOD) == 43101
    state.subscribe("oUser1", "T1")
    assert await client.send(touser="oUser1", template_id="T1", page="pages/index/index", data=GOOD) == 0
    assert await client.send(touser="oUser1", template_id="T1", page="pages/index/index", data=GOOD) == 43101
    assert len(state.delivered) == 1


@pytest.mark.parametrize("change,errcode", [
    ({"template_id": "nope"}, 40037),
    ({"touser": "bad openid!"}, 40003),
    ({"page": "/pages/x"}, 41030),
    ({"data": {**GOOD, "thing1": {"value": "一二三四五六七八九十一二三四五六七八九十一"}}}, 47003),  # 21 chars
    ({"data": {**GOOD, "amount2": {"value": "-12.34元"}}}, 47003),
    ({"data": {**GOOD, "amount2": {"value": "12345678901元"}}}, 47003),
    ({"data": {**GOOD, "time3": {"value": "yesterday"}}}, 47003),
    ({"data": {"thing1": GOOD["thing1"]}}, 47003),
])
async def test_the_standin_refuses_what_wechat_refuses(wx, change, errcode):
    state, client = wx
    state.subscribe("oUser1", "T1")
    body = {"touser": "oUser1", "template_id": "T1", "page": "pages/index/index", "data": GOOD, **change}
    assert await client.send(**body) == errcode
    assert state.delivered == [] and state.quota[("oUser1", "T1")] == 1  # a refused message uses nothing


@pytest.mark.parametrize("control,errcode", [("expire_current_token", 42001), ("invalidate_current_token", 40001)])
async def test_a_refused_token_is_fetched_again_once(wx, control, errcode):
    state, client = wx
    state.subscribe("oUser1", "T1", times=2)
    assert await client.send(touser="oUser1", template_id="T1", page="", data=GOOD) == 0
    getattr(state, control)()
    assert await client.send(touser="oUser1", template_id="T1", page="", data=GOOD) == 0
    assert [c["errcode"] for c in state.calls("/cgi-bin/message/subscribe/send")] == [0, errcode, 0]
    assert client.token.fetches == 2
