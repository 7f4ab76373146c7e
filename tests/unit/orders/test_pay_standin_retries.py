"""WeChat keeps notifying until the merchant acknowledges: the stand-in's buyer-driven payment
retries a notice that was refused or could not be delivered (same notice id, signed afresh),
and stops at the first 200/204, over real HTTP to a local server."""
from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.orders.domain import wechatpay as wx
from services.orders.main import build_verifier
from services.orders.settings import OrdersSettings
from shared.wechatpay import sign
from standins.wechat.pay import WeChatPayStandin
from simulation.cluster import free_port


class Merchant:
    """A notify_url that answers from a script (status codes), recording what it got."""

    def __init__(self, answers: list[int]) -> None:
        self.answers, self.got = answers, []

    async def notify(self, request: Request) -> Response:
        self.got.append((dict(request.headers), await request.body()))
        return Response(status_code=self.answers.pop(0) if self.answers else 200)


async def _serve(merchant: Merchant, port: int) -> tuple[uvicorn.Server, asyncio.Task]:
    app = Starlette(routes=[Route("/notify", merchant.notify, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return server, task


def _paid_params(pay: WeChatPayStandin, notify_url: str, no: str) -> dict:
    body = wx.jsapi_order(appid=pay.appid, mchid=pay.mchid, description="茶", out_trade_no=no, order_id="o-1",
                          total_fen=100, openid="oX", notify_url=notify_url,
                          pay_before=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1))
    prepay_id = pay.jsapi(body)["prepay_id"]
    key = pay.merchant_private_key()
    return dataclasses.asdict(wx.payment_params(pay.appid, prepay_id, lambda m: sign(key, m),
                                                now=datetime.now(timezone.utc)))


@pytest.fixture
def pay():
    p = WeChatPayStandin(mchid="1900000109", appid="wx5f1e6d0000000001", notify_retry_s=(0.05, 0.05, 0.05))
    p.ensure_merchant_key()
    return p


async def _until(check, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not reached")


async def test_a_refused_notice_is_retried_until_acknowledged(pay):
    port = free_port()
    merchant = Merchant([500, 503])  # refused twice, then 200
    server, task = await _serve(merchant, port)
    try:
        _, resp = await pay.request_payment(_paid_params(pay, f"http://127.0.0.1:{port}/notify", "T1000001"))
        assert resp is not None and resp.status_code == 500
        await _until(lambda: len(merchant.got) == 3)
        await asyncio.sleep(0.3)  # acknowledged: no fourth attempt
        assert len(merchant.got) == 3
        verifier = build_verifier(OrdersSettings(**pay.notifier_settings()))
        ids = set()
        for headers, body in merchant.got:
            notice, res = verifier.verify_and_decrypt(headers, body)  # every attempt is signed and verifies
            ids.add(notice["id"])
            assert res["out_trade_no"] == "T1000001" and res["amount"]["total"] == 100
        assert len(ids) == 1, "a retry is the same notice"
        assert [d.status for d in pay.deliveries] == [500, 503, 200]
    finally:
        server.should_exit = True
        await task


async def test_an_unreachable_merchant_gets_the_notice_once_it_is_up(pay):
    port = free_port()  # nothing listens yet: the first attempt fails to connect
    params = _paid_params(pay, f"http://127.0.0.1:{port}/notify", "T1000002")
    resource, resp = await pay.request_payment(params)
    assert resp is None and resource["trade_state"] == "SUCCESS", "the buyer has paid whatever became of the notice"
    assert pay.deliveries[0].status == 0 and "Error" in pay.deliveries[0].body
    merchant = Merchant([])
    server, task = await _serve(merchant, port)
    try:
        await _until(lambda: len(merchant.got) == 1)
        assert pay.deliveries[-1].status == 200
    finally:
        server.should_exit = True
        await task


async def test_the_schedule_ends(pay):
    port = free_port()
    merchant = Merchant([500] * 10)
    server, task = await _serve(merchant, port)
    try:
        await pay.request_payment(_paid_params(pay, f"http://127.0.0.1:{port}/notify", "T1000003"))
        await _until(lambda: len(merchant.got) == 4)  # the first attempt and the three retries
        await asyncio.sleep(0.3)
        assert len(merchant.got) == 4
    finally:
        server.should_exit = True
        await task
