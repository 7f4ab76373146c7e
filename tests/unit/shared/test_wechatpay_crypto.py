import json
import os
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.wechatpay import NotifyError, NotifyVerifier, encrypt_resource, notify_message, oaep_decrypt, oaep_encrypt, sign
from shared.wechatpay.crypto import authorization_header, parse_authorization, verify

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
APIV3 = os.urandom(32)


def notice(resource: dict, key=KEY, ts=None, serial="SERIAL1", nonce="n0nce"):
    body = json.dumps({"id": "EV-1", "event_type": "TRANSACTION.SUCCESS", "resource":
                       encrypt_resource(APIV3, json.dumps(resource).encode(), "transaction")}).encode()
    ts = str(ts or int(time.time()))
    headers = {"Wechatpay-Serial": serial, "Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce,
               "Wechatpay-Signature": sign(key, notify_message(ts, nonce, body)),
               "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}
    return headers, body


VERIFIER = NotifyVerifier({"SERIAL1": KEY.public_key(), "PUB_KEY_ID_0001": OTHER.public_key()}, APIV3)


def test_valid_notice_decrypts():
    h, b = notice({"out_trade_no": "X1", "amount": {"total": 100}})
    env, res = VERIFIER.verify_and_decrypt(h, b)
    assert res["out_trade_no"] == "X1" and env["id"] == "EV-1"


def test_both_keys_accepted_during_a_switch():
    h, b = notice({"a": 1}, key=OTHER, serial="PUB_KEY_ID_0001")
    assert VERIFIER.verify_and_decrypt(h, b)[1] == {"a": 1}


@pytest.mark.parametrize("case,code", [
    ("forged", "bad_signature"), ("stale", "stale_timestamp"), ("probe", "bad_signature"),
    ("unknown_serial", "unknown_serial"), ("body_changed", "bad_signature"), ("missing", "missing_headers"),
    ("odd_type", "bad_signature_type"),
])
def test_bad_notices_are_refused_with_a_reason(case, code):
    h, b = notice({"a": 1}, key=OTHER if case == "forged" else KEY, ts=int(time.time()) - 301 if case == "stale" else None,
                  serial="NOPE" if case == "unknown_serial" else "SERIAL1")
    if case == "probe":
        h["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + h["Wechatpay-Signature"]
    if case == "body_changed":
        b = b.replace(b"EV-1", b"EV-2")
    if case == "missing":
        del h["Wechatpay-Nonce"]
    if case == "odd_type":
        h["Wechatpay-Signature-Type"] = "SM2"
    with pytest.raises(NotifyError) as err:
        VERIFIER.verify_and_decrypt(h, b)
    assert err.value.code == code and 400 <= err.value.status < 500


def test_tampered_ciphertext_is_refused():
    h, b = notice({"a": 1})
    data = json.loads(b)
    data["resource"]["associated_data"] = "other"
    b2 = json.dumps(data).encode()
    h["Wechatpay-Signature"] = sign(KEY, notify_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], b2))
    with pytest.raises(NotifyError) as err:
        VERIFIER.verify_and_decrypt(h, b2)
    assert err.value.code == "undecryptable"


def test_authorization_header_signs_the_request_line():
    hdr = authorization_header(mchid="190000", serial_no="ABC", private_key=KEY, method="POST",
                               path_with_query="/v3/fund-app/mch-transfer/transfer-bills", body='{"a":1}', timestamp=1700000000, nonce="N")
    parts = parse_authorization(hdr)
    msg = b"POST\n/v3/fund-app/mch-transfer/transfer-bills\n1700000000\nN\n{\"a\":1}\n"
    assert parts["mchid"] == "190000" and verify(KEY.public_key(), msg, parts["signature"])
    assert not verify(KEY.public_key(), msg.replace(b"POST", b"GET"), parts["signature"])


def test_oaep_round_trip():
    assert oaep_decrypt(KEY, oaep_encrypt(KEY.public_key(), "张三")) == "张三"
