"""The outgoing-call rules (JSAPI body, paySign, refund body), bill parsing and comparison,
and the stand-in's contract checks for prepay / close / refunds / bills (in process)."""
from __future__ import annotations

import gzip
import hashlib
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from services.orders.domain import reconcile as rec
from services.orders.domain import wechatpay as wx
from services.orders.wechatpay.calls import PayCalls
from shared.contracts.orders import OrderLine, RefundedLine
from shared.wechatpay import load_public_key, sign, verify
from shared.wechatpay.client import Found, NotFound, Refused, Unknown, WeChatPayClient
from standins.wechat.pay import PayError, WeChatPayStandin, make_router

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def test_the_jsapi_body_is_the_same_for_every_repeat_and_expires_with_the_order():
    kw = dict(appid="wx1", mchid="19", description="d" * 200, out_trade_no="T1234567", order_id="o-1",
              total_fen=1234, openid="oX", notify_url="https://m.example/n", pay_before=NOW + timedelta(minutes=30))
    body = wx.jsapi_order(**kw)
    assert body == wx.jsapi_order(**kw)
    assert body["time_expire"] == "2026-12-01T16:30:00+08:00" and len(body["description"]) == 127
    assert body["amount"] == {"total": 1234, "currency": "CNY"} and body["payer"] == {"openid": "oX"}
    assert wx.prepay_expiry(NOW, NOW + timedelta(minutes=30)) == NOW + timedelta(minutes=30)
    assert wx.prepay_reusable("wx1", NOW + timedelta(minutes=6), NOW)
    assert not wx.prepay_reusable("wx1", NOW + timedelta(minutes=4), NOW)


def test_pay_sign_is_the_merchant_signature_of_four_lines():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p = wx.payment_params("wxAPP", "wx201410272009395522657a690389285100", lambda m: sign(key, m), now=NOW,
                          nonce="5K8264ILTKCH16CQ2502SI8ZNMTM67VS")
    assert p.timeStamp == str(int(NOW.timestamp())) and p.package.startswith("prepay_id=") and p.signType == "RSA"
    msg = b"wxAPP\n" + p.timeStamp.encode() + b"\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\n" + p.package.encode() + b"\n"
    assert verify(key.public_key(), msg, p.paySign)


def test_the_refund_body_names_every_line():
    lines = (OrderLine(line_id="1", product_id="p1", sku="s1", quantity=2, unit_price_fen=500, paid_fen=1000),
             OrderLine(line_id="2", product_id="p2", quantity=1, unit_price_fen=300, paid_fen=300))
    body = wx.refund_request(out_trade_no="T1234567", out_refund_no="R1", reason=None, notify_url="https://m/n",
                             refund_fen=800, total_fen=1300,
                             lines=[RefundedLine(line_id="1", quantity=1, amount_fen=500),
                                    RefundedLine(line_id="2", quantity=0, amount_fen=300)], order_lines=lines)
    assert body["amount"] == {"refund": 800, "total": 1300, "currency": "CNY"} and "reason" not in body
    assert [(g["merchant_goods_id"], g["refund_amount"], g["refund_quantity"]) for g in body["goods_detail"]] == \
        [("s1", 500, 1), ("p2", 300, 0)]
    assert wx.as_refund_resource({"status": "PROCESSING"}, "19") == {"status": "PROCESSING", "mchid": "19",
                                                                     "refund_status": "PROCESSING"}


BILL = """交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注
`2026-12-01 10:00:00,`wx1,`19,`0,`,`4200A,`T0000001,`o1,`JSAPI,`SUCCESS,`OTHERS,`CNY,`12.34,`0.00,`0,`0,`0.00,`0.00,`,`,`x,`,`0.07,`0.60%,`12.34,`0.00,`
`2026-12-01 11:00:00,`wx1,`19,`0,`,`4200A,`T0000001,`o1,`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`5030A,`R1,`1.00,`0.00,`ORIGINAL,`SUCCESS,`x,`,`0.00,`0.60%,`12.34,`1.00,`
`2026-12-01 12:00:00,`wx1,`19,`0,`,`4200B,`T0000002,`o2,`JSAPI,`SUCCESS,`OTHERS,`CNY,`5.00,`0.00,`0,`0,`0.00,`0.00,`,`,`x,`,`0.03,`0.60%,`5.00,`0.00,`
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额
`3,`17.34,`1.00,`0.00,`0.10,`17.34,`1.00
"""


def test_a_bill_is_parsed_and_compared_with_our_records():
    bill = rec.parse_bill(BILL)
    assert len(bill.rows) == 3 and bill.rows[0]["商户订单号"] == "T0000001" and bill.totals["退款总金额"] == "1.00"
    assert rec.fen("12.34") == 1234 and rec.fen("0.07") == 7
    with pytest.raises(rec.BillFormatError):
        rec.fen("1.234")
    P, R = rec.OurPayment, rec.OurRefund
    ours = {"T0000001": P("T0000001", 1234, "4200A", "paid"), "T0000003": P("T0000003", 100, "4200C", "paid")}
    known = {"T0000001": ours["T0000001"], "T0000002": P("T0000002", 500, "4200B", "cancelled")}
    found = rec.compare_trade_bill(bill, day_payments=ours, known_payments=known,
                                   day_refunds={"R1": R("R1", 100, "succeeded")},
                                   known_refunds={"R1": R("R1", 100, "succeeded")})
    assert {(f.kind, f.subject, f.key) for f in found} == {("paid_after_cancel", "payment", "T0000002"),
                                                         ("missing", "payment", "T0000003")}
    known["T0000001"] = P("T0000001", 1200, "4200A", "paid")
    found = rec.compare_trade_bill(bill, day_payments={}, known_payments=known, day_refunds={},
                                   known_refunds={"R1": R("R1", 99, "succeeded")})
    assert ("amount", "payment", "T0000001", 1200, 1234) in {(f.kind, f.subject, f.key, f.ours_fen, f.wechat_fen)
                                                             for f in found}
    assert ("amount", "refund", "R1") in {(f.kind, f.subject, f.key) for f in found}


# -- the stand-in's contract, through the shared client in process --------------------------------
@pytest.fixture
def world():
    pay = WeChatPayStandin(mchid="1900000109", appid="wx5f1e6d0000000001")
    pay.ensure_merchant_key()
    app = FastAPI()
    app.include_router(make_router(pay))
    api = WeChatPayClient(base_url="http://wx", mchid=pay.mchid, merchant_serial=pay.merchant_serial,
                          merchant_key=pay.merchant_private_key(),
                          platform_keys={s: load_public_key(k.pem) for s, k in pay.keys.items()},
                          transport=httpx.ASGITransport(app=app))
    return pay, PayCalls(api, mchid=pay.mchid)


#: one deadline for every prepay of the module: two identical requests must be byte-equal, and a
#: deadline taken per call differs once the clock crosses a second between them
PAY_BEFORE = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=6)


def _jsapi(pay, no="T1234567", **kw):
    return {**wx.jsapi_order(appid=pay.appid, mchid=pay.mchid, description="茶", out_trade_no=no, order_id="o-1",
                             total_fen=100, openid="oX", notify_url="https://m.example/n",
                             pay_before=PAY_BEFORE), **kw}


@pytest.mark.parametrize("change,code", [
    ({"appid": "wx0"}, "APPID_MCHID_NOT_MATCH"), ({"out_trade_no": "T1"}, "PARAM_ERROR"),
    ({"notify_url": "https://m.example/n?x=1"}, "PARAM_ERROR"), ({"payer": {}}, "PARAM_ERROR"),
    ({"amount": {"total": 0, "currency": "CNY"}}, "PARAM_ERROR"), ({"time_expire": "tomorrow"}, "PARAM_ERROR"),
    ({"surprise": 1}, "PARAM_ERROR"), ({"attach": "x" * 129}, "PARAM_ERROR"),
])
async def test_the_standin_refuses_a_wrong_prepay(world, change, code):
    pay, calls = world
    res = await calls.jsapi(_jsapi(pay, **change))
    assert isinstance(res, Refused) and res.code == code, res
    assert pay.trades == {}


async def test_prepay_close_query_and_bills_follow_the_contract(world):
    pay, calls = world
    first = await calls.jsapi(_jsapi(pay))
    assert isinstance(first, Found) and (await calls.jsapi(_jsapi(pay))).data == first.data    # same request: same id
    other = await calls.jsapi(_jsapi(pay, description="另一个"))
    assert isinstance(other, Refused) and other.code == "INVALID_REQUEST"
    q = await calls.query_trade("T1234567")
    assert isinstance(q, Found) and q.data["trade_state"] == "NOTPAY"
    assert isinstance(await calls.query_trade("T7654321"), NotFound)
    assert isinstance(await calls.close("T1234567"), Found) and isinstance(await calls.close("T1234567"), Found)
    assert (await calls.query_trade("T1234567")).data["trade_state"] == "CLOSED"
    assert (await calls.jsapi(_jsapi(pay))).code == "ORDER_CLOSED"

    bill = await calls.bill("trade", datetime.now(wx.CST).date().isoformat())
    assert isinstance(bill, Found) and bill.data["hash_type"] == "SHA1"
    raw = await calls.download(bill.data["download_url"])
    assert isinstance(raw, bytes) and hashlib.sha1(gzip.decompress(raw)).hexdigest() == bill.data["hash_value"]
    future = await calls.bill("trade", (datetime.now(wx.CST).date() + timedelta(days=1)).isoformat())
    assert isinstance(future, Refused) and future.code == "NO_STATEMENT_EXIST"
    await calls.aclose()


async def test_a_merchant_signature_the_standin_does_not_know_is_refused(world):
    pay, calls = world
    calls.api.merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    res = await calls.jsapi(_jsapi(pay))
    assert isinstance(res, Refused) and (res.http_status, res.code) == (401, "SIGN_ERROR")
    await calls.aclose()


async def test_refunds_are_idempotent_on_out_refund_no_and_bounded_by_the_payment(world):
    pay, calls = world
    pay.payment_resource("T1234567", 1000)
    pay.behave_refund(final=None)
    body = {"out_trade_no": "T1234567", "out_refund_no": "R1", "notify_url": "https://m.example/n",
            "amount": {"refund": 600, "total": 1000, "currency": "CNY"}}
    first = await calls.submit_refund(body)
    assert isinstance(first, Found) and first.data["status"] == "PROCESSING"
    assert (await calls.submit_refund(body)).data["refund_id"] == first.data["refund_id"]
    assert pay.refund_orders["R1"].submissions == 2
    changed = await calls.submit_refund({**body, "amount": {"refund": 500, "total": 1000, "currency": "CNY"}})
    assert isinstance(changed, Refused) and changed.code == "INVALID_REQUEST"
    over = await calls.submit_refund({**body, "out_refund_no": "R2"})
    assert isinstance(over, Refused) and over.code == "INVALID_REQUEST"     # 600 + 600 > 1000
    pay.behave_refund("R3", fault="error500")
    res = await calls.submit_refund({**body, "out_refund_no": "R3", "amount": {"refund": 100, "total": 1000,
                                                                               "currency": "CNY"}})
    assert isinstance(res, Unknown) and "R3" in pay.refunds                  # unknown to us, created at WeChat
    assert (await calls.query_refund("R3")).data["status"] == "PROCESSING"
    assert isinstance(await calls.query_refund("R9"), NotFound)
    await calls.aclose()
