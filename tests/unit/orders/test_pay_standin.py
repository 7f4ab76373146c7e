"""The WeChat Pay stand-in builds notices that the orders service's verifier accepts, and
its bad variants are refused for the right reason (no server needed)."""
from __future__ import annotations

import time

import pytest

from services.orders.main import build_verifier
from services.orders.settings import OrdersSettings
from shared.wechatpay import NotifyError
from standins.wechat.pay import WeChatPayStandin


@pytest.fixture(scope="module")
def pay():
    p = WeChatPayStandin(mchid="1900000109", appid="wxabc")
    p.add_platform_key("public_key")
    return p


def verifier_for(pay):
    return build_verifier(OrdersSettings(**pay.notifier_settings()))


def test_payment_notice_verifies_and_decrypts_to_the_documented_fields(pay):
    n = pay.payment_notice("T1234567", 2300)
    notice, res = verifier_for(pay).verify_and_decrypt(n.headers, n.body)
    assert notice["event_type"] == "TRANSACTION.SUCCESS" and notice["resource"]["original_type"] == "transaction"
    assert res["out_trade_no"] == "T1234567" and res["amount"]["total"] == 2300 and res["trade_state"] == "SUCCESS"
    assert {"appid", "mchid", "transaction_id", "success_time", "payer"} <= res.keys()


def test_both_keys_verify_during_the_switch(pay):
    v = verifier_for(pay)
    serials = list(pay.keys)
    assert serials[1].startswith("PUB_KEY_ID_") and not serials[0].startswith("PUB_KEY_ID_")
    for serial in serials:
        n = pay.payment_notice("T1234567", 2300, notice={"serial": serial})
        assert n.headers["Wechatpay-Serial"] == serial
        v.verify_and_decrypt(n.headers, n.body)


def test_platform_keys_may_be_files_as_kubernetes_mounts_them(pay, tmp_path):
    """deploy/k8s: ORDERS_WECHATPAY_PLATFORM_KEYS maps each serial to a file of the mounted
    orders-wechatpay-keys Secret; a key given by path verifies as the inline one does."""
    settings = pay.notifier_settings()
    files = {}
    for i, (serial, pem) in enumerate(settings["wechatpay_platform_keys"].items()):
        (tmp_path / f"key{i}.pem").write_text(pem)
        files[serial] = str(tmp_path / f"key{i}.pem")
    v = build_verifier(OrdersSettings(**{**settings, "wechatpay_platform_keys": files}))
    for serial in files:
        n = pay.payment_notice("T1234567", 2300, notice={"serial": serial})
        v.verify_and_decrypt(n.headers, n.body)
    with pytest.raises(FileNotFoundError):  # a missing mount stops the start, not a notice later
        build_verifier(OrdersSettings(**{**settings, "wechatpay_platform_keys": {"X": str(tmp_path / "absent.pem")}}))


@pytest.mark.parametrize("variant, code", [
    ({"forge": True}, "bad_signature"),
    ({"probe": True}, "bad_signature"),
    ({"tamper": True}, "bad_signature"),
    ({"timestamp_offset_s": -400}, "stale_timestamp"),   # offsets: the clock is read when the test runs,
    ({"timestamp_offset_s": +400}, "stale_timestamp"),   # not at collection (minutes earlier in a full run)
])
def test_bad_variants_are_refused(pay, variant, code):
    if "timestamp_offset_s" in variant:
        variant = {"timestamp": int(time.time()) + variant["timestamp_offset_s"]}
    n = pay.payment_notice("T1234567", 2300, notice=variant)
    if variant.get("probe"):
        assert n.headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    with pytest.raises(NotifyError) as exc:
        verifier_for(pay).verify_and_decrypt(n.headers, n.body)
    assert exc.value.code == code


def test_a_key_the_service_does_not_know_is_refused(pay):
    other = WeChatPayStandin(mchid=pay.mchid, appid=pay.appid, apiv3_key=pay.apiv3_key)
    n = other.payment_notice("T1234567", 2300)
    with pytest.raises(NotifyError) as exc:
        verifier_for(pay).verify_and_decrypt(n.headers, n.body)
    assert exc.value.code == "unknown_serial"


def test_refund_notice_carries_the_refund_fields(pay):
    pay.payment_notice("T7654321", 5000)
    n = pay.refund_notice("T7654321", "R-1", 1200, 5000, status="ABNORMAL")
    _, res = verifier_for(pay).verify_and_decrypt(n.headers, n.body)
    assert n.event_type == "REFUND.ABNORMAL" and res["refund_status"] == "ABNORMAL" and "success_time" not in res
    assert res["amount"] == {"total": 5000, "refund": 1200, "payer_total": 5000, "payer_refund": 1200}
    assert res["transaction_id"] == pay.transactions["T7654321"]["transaction_id"]


def test_env_round_trips_through_settings(pay, monkeypatch):
    for k, v in pay.env().items():
        monkeypatch.setenv(k, v)
    s = OrdersSettings()
    assert s.wechatpay_platform_keys == pay.notifier_settings()["wechatpay_platform_keys"]
    assert s.wechatpay_mchid == pay.mchid and s.wechatpay_apiv3_key == pay.apiv3_key


def test_saved_standin_signs_as_the_original(pay, tmp_path):
    path = str(tmp_path / "pay.json")
    pay.save(path)
    twin = WeChatPayStandin.load(path)
    assert twin.notifier_settings() == pay.notifier_settings()
    n = twin.payment_notice("T1234567", 2300)
    verifier_for(pay).verify_and_decrypt(n.headers, n.body)


async def test_query_endpoint_checks_the_merchant_signature_and_signs_its_answer(pay):
    import httpx
    from cryptography.hazmat.primitives.asymmetric import rsa
    from fastapi import FastAPI

    from shared.wechatpay import authorization_header, notify_message, verify
    from standins.wechat.pay import make_router

    merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pay.register_merchant_key("MERCHANTSERIAL1", merchant_key.public_key())
    pay.payment_resource("T5555555", 990)
    app = FastAPI()
    app.include_router(make_router(pay))
    path = f"/v3/pay/transactions/out-trade-no/T5555555?mchid={pay.mchid}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://wx") as c:
        assert (await c.get(path)).status_code == 401
        auth = authorization_header(mchid=pay.mchid, serial_no="MERCHANTSERIAL1", private_key=merchant_key,
                                    method="GET", path_with_query=path)
        r = await c.get(path, headers={"Authorization": auth})
        assert r.status_code == 200 and r.json()["amount"]["total"] == 990
        msg = notify_message(r.headers["Wechatpay-Timestamp"], r.headers["Wechatpay-Nonce"], r.content)
        assert verify(pay.active_key.private_key.public_key(), msg, r.headers["Wechatpay-Signature"])
        forged = authorization_header(mchid=pay.mchid, serial_no="MERCHANTSERIAL1",
                                      private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                      method="GET", path_with_query=path)
        assert (await c.get(path, headers={"Authorization": forged})).status_code == 401
