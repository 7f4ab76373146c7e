"""The mini-program code client against the stand-in (in-process over httpx's ASGI transport):
the stand-in refuses what WeChat would refuse, and the client survives a refused token."""
from __future__ import annotations

import io

import httpx
import pytest
import zxingcpp
from fastapi import FastAPI
from PIL import Image

from services.referral.clients.wechat import WxaClient
from services.referral.domain.errors import WechatApiError
from standins.wechat.miniprogram import MiniProgramState, make_router

BASE = "http://wechat.standin"


@pytest.fixture
def wx():
    state = MiniProgramState(appid="wxappid", secret="s3cret")
    app = FastAPI()
    app.include_router(make_router(state))
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    return state, http


def decode(png: bytes) -> list[str]:
    return [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


async def test_code_request_is_valid_and_the_image_encodes_the_scene(wx):
    state, http = wx
    client = WxaClient("wxappid", "s3cret", http, api_base=BASE)
    png = await client.code_unlimited("Ab3dE9xYz1", page="/pages/goods/detail", width=430)
    assert png.startswith(b"\x89PNG") and decode(png) == ["Ab3dE9xYz1"]
    [tok] = state.calls("/cgi-bin/stable_token")
    assert tok["json"] == {"grant_type": "client_credential", "appid": "wxappid", "secret": "s3cret", "force_refresh": False}
    [call] = state.calls("/wxa/getwxacodeunlimit")
    assert call["errcode"] == 0 and call["access_token"] == state.current
    assert call["json"]["page"] == "pages/goods/detail"  # the leading slash WeChat refuses is stripped


@pytest.mark.parametrize("control,errcode", [("expire_current_token", 42001), ("invalidate_current_token", 40001)])
async def test_client_refetches_the_token_once_when_wechat_refuses_it(wx, control, errcode):
    state, http = wx
    client = WxaClient("wxappid", "s3cret", http, api_base=BASE)
    await client.code_unlimited("code000001", page="pages/index/index")
    old = state.current
    getattr(state, control)()
    png = await client.code_unlimited("code000002", page="pages/index/index")
    assert decode(png) == ["code000002"]
    codes = [c["errcode"] for c in state.calls("/wxa/getwxacodeunlimit")]
    assert codes == [0, errcode, 0]
    assert state.current != old and client.token_fetches == 2
    # a normal (not forced) refetch was enough
    assert [c["json"]["force_refresh"] for c in state.calls("/cgi-bin/stable_token")] == [False, False]


async def test_a_token_refused_twice_is_an_error_not_a_loop(wx):
    state, http = wx
    client = WxaClient("wxappid", "s3cret", http, api_base=BASE)
    await client.code_unlimited("code000001", page="pages/index/index")
    original = state.issue

    def always_bad(force):  # every token it hands out is already invalid
        tok = original(force)
        tok.state = "invalid"
        return tok
    state.issue = always_bad  # type: ignore[method-assign]
    state.invalidate_current_token()
    with pytest.raises(WechatApiError) as exc:
        await client.code_unlimited("code000002", page="pages/index/index")
    assert exc.value.errcode == 40001
    assert len(state.calls("/wxa/getwxacodeunlimit")) == 3


async def test_wrong_secret_is_refused(wx):
    _, http = wx
    client = WxaClient("wxappid", "wrong", http, api_base=BASE)
    with pytest.raises(WechatApiError) as exc:
        await client.code_unlimited("code000001", page="pages/index/index")
    assert exc.value.errcode == 40125


@pytest.mark.parametrize("body,errcode", [
    ({"scene": "a" * 33, "page": "pages/index/index"}, 40169),
    ({"scene": "中文", "page": "pages/index/index"}, 40169),
    ({"scene": "a%20b", "page": "pages/index/index"}, 40169),
    ({"page": "pages/index/index"}, 40169),
    ({"scene": "ok", "page": "/pages/index/index"}, 41030),
    ({"scene": "ok", "page": "pages/index/index?x=1"}, 41030),
    ({"scene": "ok", "page": "pages/index/index", "width": 279}, 40097),
    ({"scene": "ok", "page": "pages/index/index", "width": 1281}, 40097),
    ({"scene": "ok", "page": "pages/index/index", "env_version": "beta"}, 40097),
])
async def test_standin_refuses_what_wechat_refuses(wx, body, errcode):
    state, http = wx
    tok = state.issue(False).value
    r = await http.post(f"{BASE}/wxa/getwxacodeunlimit", params={"access_token": tok}, json=body)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["errcode"] == errcode


async def test_standin_checks_the_token_and_released_pages(wx):
    state, http = wx
    r = await http.post(f"{BASE}/wxa/getwxacodeunlimit", json={"scene": "ok"})
    assert r.json()["errcode"] == 41001
    r = await http.post(f"{BASE}/wxa/getwxacodeunlimit", params={"access_token": "forged"}, json={"scene": "ok"})
    assert r.json()["errcode"] == 40001
    state.released_pages = {"pages/index/index"}
    tok = state.issue(False).value
    r = await http.post(f"{BASE}/wxa/getwxacodeunlimit", params={"access_token": tok},
                        json={"scene": "ok", "page": "pages/unreleased/x"})
    assert r.json()["errcode"] == 41030
    r = await http.post(f"{BASE}/wxa/getwxacodeunlimit", params={"access_token": tok},
                        json={"scene": "ok", "page": "pages/unreleased/x", "check_path": False})
    assert r.headers["content-type"] == "image/png"
    r = await http.post(f"{BASE}/cgi-bin/stable_token", json={"grant_type": "password", "appid": "wxappid", "secret": "s3cret"})
    assert r.json()["errcode"] == 40002
    forced = await http.post(f"{BASE}/cgi-bin/stable_token", json={
        "grant_type": "client_credential", "appid": "wxappid", "secret": "s3cret", "force_refresh": True})
    assert forced.json()["access_token"] != tok
    r = await http.post(f"{BASE}/wxa/getwxacodeunlimit", params={"access_token": tok}, json={"scene": "ok"})
    assert r.json()["errcode"] == 40001  # force_refresh invalidated the old token
