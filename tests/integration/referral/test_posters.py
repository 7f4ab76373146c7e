"""Posters: a PNG whose code decodes back to the promoter code, with a QR of the share URL
without WeChat credentials and the mini-program code from the (HTTP-served) stand-in with them."""
from __future__ import annotations

import base64
import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import zxingcpp
from PIL import Image

from tests.integration.referral.conftest import enrol, product_png

pytestmark = pytest.mark.integration


def decode(png: bytes) -> list[str]:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return [r.text for r in zxingcpp.read_barcodes(img)]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_qr_poster_carries_the_share_url_and_is_cached_until_an_input_changes(make_svc, ids, standin):
    standin.images["tea.png"] = product_png((20, 120, 60))
    async with make_svc(share_url_base="https://shop.example.com/share", image_hosts=standin.host) as svc:
        a = ids("a")
        code = await enrol(svc, a, nickname="李四")
        body = {"title": "高山红茶 250g", "price_fen": 1234, "image_base64": b64(product_png())}
        r = await svc.client.post("/v1/posters", json=body, headers=svc.who(a))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png" and r.headers["x-poster-cache"] == "miss"
        [url] = decode(r.content)
        assert url.startswith("https://shop.example.com/share?")
        assert parse_qs(urlsplit(url).query)["scene"] == [code]

        again = await svc.client.post("/v1/posters", json=body, headers=svc.who(a))
        assert again.headers["x-poster-cache"] == "hit" and again.content == r.content
        changed = await svc.client.post("/v1/posters", json={**body, "price_fen": 999}, headers=svc.who(a))
        assert changed.headers["x-poster-cache"] == "miss" and changed.content != r.content

        # a registered product, its image fetched over HTTP from the (allowed) local host
        put = await svc.client.put("/v1/admin/products/tea-1", headers=svc.admin(), json={
            "title": "春茶 礼盒", "price_fen": 8800, "image_url": standin.image_url("tea.png")})
        assert put.status_code == 200, put.text
        r = await svc.client.post("/v1/posters", json={"product_id": "tea-1"}, headers=svc.who(a))
        assert r.status_code == 200 and parse_qs(urlsplit(decode(r.content)[0]).query)["scene"] == [code]

        # refusals
        assert (await svc.client.post("/v1/posters", json={"product_id": "nope"}, headers=svc.who(a))).status_code == 404
        r = await svc.client.post("/v1/posters", json=body, headers=svc.who(ids("stranger")))
        assert (r.status_code, r.json()["code"]) == (403, "not_a_promoter")
        r = await svc.client.post("/v1/posters", headers=svc.who(a), json={
            "title": "x", "price_fen": 1, "image_url": "http://169.254.169.254/latest/meta-data"})
        assert (r.status_code, r.json()["code"]) == (422, "image_refused")
        r = await svc.client.post("/v1/posters", headers=svc.who(a), json={
            "title": "x", "price_fen": 1, "image_base64": b64(b"not an image")})
        assert (r.status_code, r.json()["code"]) == (422, "image_refused")
        r = await svc.client.post("/v1/posters", headers=svc.who(a), json={"title": "x", "price_fen": -1,
                                                                           "image_base64": b64(product_png())})
        assert (r.status_code, r.json()["code"]) == (422, "invalid_request")


async def test_wechat_poster_uses_the_mini_program_code_and_survives_an_expired_token(make_svc, ids, standin):
    settings = dict(wechat_appid=standin.state.appid, wechat_secret=standin.state.secret,
                    wechat_api_base=standin.base, wechat_page="/pages/goods/detail")
    async with make_svc(**settings) as svc:
        a, b = ids("a"), ids("b")
        code_a, code_b = await enrol(svc, a, nickname="王五"), await enrol(svc, b)
        body = {"title": "坚果礼包", "price_fen": 5990, "image_base64": b64(product_png((90, 60, 20)))}
        r = await svc.client.post("/v1/posters", json=body, headers=svc.who(a))
        assert r.status_code == 200, r.text
        assert decode(r.content) == [code_a]  # the stand-in's code encodes the scene

        [call] = standin.state.calls("/wxa/getwxacodeunlimit")
        sent = call["json"]
        assert call["errcode"] == 0 and call["access_token"] == standin.state.current
        assert sent["scene"] == code_a and len(sent["scene"]) <= 32
        assert re.fullmatch(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]+", sent["scene"])
        assert sent["page"] == "pages/goods/detail" and 280 <= sent["width"] <= 1280

        # another product: the code comes from the cache, WeChat is not asked again
        r = await svc.client.post("/v1/posters", json={**body, "title": "坚果礼包 大份"}, headers=svc.who(a))
        assert r.status_code == 200 and len(standin.state.calls("/wxa/getwxacodeunlimit")) == 1

        standin.state.expire_current_token()
        r = await svc.client.post("/v1/posters", json=body, headers=svc.who(b))
        assert r.status_code == 200, r.text
        assert decode(r.content) == [code_b]
        assert [c["errcode"] for c in standin.state.calls("/wxa/getwxacodeunlimit")] == [0, 42001, 0]
        assert len(standin.state.calls("/cgi-bin/stable_token")) == 2


async def test_wechat_error_is_a_502_with_its_code(make_svc, ids, standin):
    standin.state.released_pages = {"pages/index/index"}
    async with make_svc(wechat_appid=standin.state.appid, wechat_secret=standin.state.secret,
                        wechat_api_base=standin.base, wechat_page="pages/not/released") as svc:
        a = ids("a")
        await enrol(svc, a)
        r = await svc.client.post("/v1/posters", headers=svc.who(a), json={
            "title": "x", "price_fen": 1, "image_base64": b64(product_png())})
        assert r.status_code == 502 and "41030" in r.json()["message"]
