"""The WeChat transfer client against the stand-in, in process (httpx ASGI transport): the
stand-in refuses what WeChat refuses, and the client reads every answer the safe way."""
from __future__ import annotations

import json

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services.payout.domain import withdrawal as rules
from services.payout.transfer.client import BillFound, BillNotFound, Refused, TransferClient, Unknown
from shared.wechatpay import NotifyVerifier
from standins.wechat.transfer import TransferStandin, app_for

MCH_SERIAL = "MERCHANTSERIAL01"
TERMS = rules.TransferTerms(appid="wx8888888888888888", notify_url="http://127.0.0.1:8104/v1/wechatpay/transfer-notify")


@pytest.fixture(scope="module")
def merchant_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def standin(merchant_key) -> TransferStandin:
    return TransferStandin.generate(mchid="1900000001", appid=TERMS.appid, merchant_serial=MCH_SERIAL,
                                    merchant_public_key=merchant_key.public_key())


def client_for(standin: TransferStandin, merchant_key, *, timeout_s: float = 5.0, platform_key=None) -> TransferClient:
    pub = platform_key or standin.platform_key.public_key()
    return TransferClient(base_url="http://127.0.0.1:8199", mchid=standin.mchid, merchant_serial=MCH_SERIAL,
                          merchant_key=merchant_key, platform_keys={standin.platform_serial: pub},
                          platform_serial=standin.platform_serial, timeout_s=timeout_s,
                          transport=httpx.ASGITransport(app=app_for(standin)))


def body(no="bill0001", amount=1_000, openid="o-1", cipher=None):
    return rules.transfer_body(TERMS, bill_no=no, openid=openid, net_fen=amount, user_name_cipher=cipher)


async def test_create_is_idempotent_on_out_bill_no_and_answers_are_verified(standin, merchant_key):
    c = client_for(standin, merchant_key)
    first = await c.create(body())
    assert isinstance(first, BillFound) and first.bill["state"] == "WAIT_USER_CONFIRM" and first.bill["package_info"]
    again = await c.create(body())
    assert isinstance(again, BillFound) and again.bill["transfer_bill_no"] == first.bill["transfer_bill_no"]
    assert len(standin.bills) == 1 and [k.out_bill_no for k in standin.create_calls] == ["bill0001", "bill0001"]
    other = await c.create(body(amount=1_001))
    assert isinstance(other, Refused) and other.code == "PARAM_ERROR"
    q = await c.query("bill0001")
    assert isinstance(q, BillFound) and q.bill["transfer_amount"] == 1_000 and q.bill["mch_id"] == standin.mchid
    assert isinstance(await c.query("nosuchbill"), BillNotFound)
    await c.aclose()


async def test_a_wrong_merchant_signature_is_refused(standin):
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    c = client_for(standin, stranger)
    res = await c.create(body())
    assert isinstance(res, Refused) and (res.http_status, res.code) == (401, "SIGN_ERROR")
    assert standin.bills == {}
    await c.aclose()


async def test_an_answer_not_signed_by_the_platform_decides_nothing(standin, merchant_key):
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    c = client_for(standin, merchant_key, platform_key=impostor)
    assert isinstance(await c.create(body()), Unknown)
    assert isinstance(await c.query("bill0001"), Unknown)      # even "found"
    assert isinstance(await c.query("nosuchbill"), Unknown)    # and "not found"
    await c.aclose()


@pytest.mark.parametrize("mutate,code", [
    (lambda b: b.update(transfer_scene_report_infos=b["transfer_scene_report_infos"][:1]), "PARAM_ERROR"),
    (lambda b: b["transfer_scene_report_infos"][0].update(info_type="活动名称"), "PARAM_ERROR"),
    (lambda b: b.update(user_recv_perception="现金奖励"), "INVALID_REQUEST"),
    (lambda b: b.update(appid="wx0000"), "APPID_MCHID_NOT_MATCH"),
    (lambda b: b.update(out_bill_no="bad-bill-no"), "PARAM_ERROR"),
    (lambda b: b.update(out_bill_no="x" * 33), "PARAM_ERROR"),
    (lambda b: b.update(transfer_amount=0), "PARAM_ERROR"),
    (lambda b: b.update(transfer_amount=-5), "PARAM_ERROR"),
    (lambda b: b.update(notify_url="https://example.com/n?x=1"), "PARAM_ERROR"),
    (lambda b: b.pop("notify_url"), "PARAM_ERROR"),
    (lambda b: b.update(transfer_scene_id="1001"), "PARAM_ERROR"),
    (lambda b: b.update(transfer_scene_id="1000"), "INVALID_REQUEST"),   # 1000 is not a 劳务报酬 scene
    (lambda b: b.update(transfer_amount=200_000), "PARAM_ERROR"),   # no user_name at 2000 yuan
    (lambda b: b.update(extra_field=1), "PARAM_ERROR"),
])
async def test_the_standin_refuses_a_wrong_body(standin, merchant_key, mutate, code):
    c = client_for(standin, merchant_key)
    b = body()
    mutate(b)
    res = await c.create(b)
    assert isinstance(res, Refused) and res.code == code, res
    assert standin.bills == {}
    await c.aclose()


async def test_real_name_is_sent_encrypted_with_the_platform_serial(standin, merchant_key):
    c = client_for(standin, merchant_key)
    cipher, serial = c.encrypt_name("张三")
    res = await c.create(body(amount=200_000, cipher=cipher), name_serial=serial)
    assert isinstance(res, BillFound)
    assert standin.bill("bill0001").user_name == "张三"
    # a retry encrypts differently but is the same request
    cipher2, _ = c.encrypt_name("张三")
    assert cipher2 != cipher
    assert isinstance(await c.create(body(amount=200_000, cipher=cipher2), name_serial=serial), BillFound)
    # without the serial header WeChat cannot know which key encrypted the name
    res = await c.create(body(no="bill0002", amount=200_000, cipher=cipher))
    assert isinstance(res, Refused) and res.code == "PARAM_ERROR"
    await c.aclose()


async def test_slow_and_500_answers_are_unknown_outcomes_though_the_bill_exists(standin, merchant_key):
    c = client_for(standin, merchant_key, timeout_s=0.3)
    standin.behave("o-slow", fault="slow", slow_s=2.0)
    standin.behave("o-500", fault="error500")
    assert isinstance(await c.create(body(no="slow1", openid="o-slow")), Unknown)
    assert isinstance(await c.create(body(no="err1", openid="o-500")), Unknown)
    assert set(standin.bills) == {"slow1", "err1"}
    # the same number again: the existing bill, no fault the second time
    assert isinstance(await c.create(body(no="err1", openid="o-500")), BillFound)
    await c.aclose()
    await standin.aclose()


async def test_final_notices_are_signed_and_encrypted_like_payment_notices(standin, merchant_key):
    c = client_for(standin, merchant_key)
    await c.create(body())
    await standin.confirm("bill0001", notify=False)
    headers, raw = standin.build_notice("bill0001")
    verifier = NotifyVerifier(platform_keys={standin.platform_serial: standin.platform_key.public_key()},
                              apiv3_key=standin.apiv3_key.encode())
    notice, resource = verifier.verify_and_decrypt(headers, raw)
    assert notice["event_type"] == "MCHTRANSFER.BILL.FINISHED" and notice["resource"]["original_type"] == "mch_payment"
    assert resource["state"] == "SUCCESS" and resource["out_bill_no"] == "bill0001" and resource["transfer_amount"] == 1_000
    assert json.loads(standin.build_notice("bill0001")[1])["id"] == notice["id"]   # a retry keeps its id
    await c.aclose()


async def test_an_overdue_bill_ignores_confirmation_and_lapses(standin, merchant_key):
    c = client_for(standin, merchant_key)
    standin.behave("o-1", outcome="overdue")
    res = await c.create(body())
    assert isinstance(res, BillFound)
    assert (await standin.confirm(package=res.bill["package_info"], notify=False)).state == "WAIT_USER_CONFIRM"
    b = await standin.lapse("bill0001", notify=False)
    assert (b.state, b.fail_reason) == ("FAIL", "OVERDUE_CLOSE")
    await c.aclose()
