"""During a switch of WeChat Pay key modes (platform certificate -> WeChat Pay public key),
payout accepts answers and notices signed with either key, as orders does."""
from __future__ import annotations

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from services.payout.domain import withdrawal as rules
from services.payout.settings import PayoutSettings
from services.payout.transfer.client import BillFound, TransferClient, Unknown
from shared.wechatpay import NotifyVerifier, load_public_key
from standins.wechat.transfer import TransferStandin, app_for

TERMS = rules.TransferTerms(appid="wx8888888888888888", notify_url="https://merchant.example/v1/wechatpay/transfer-notify")


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


async def test_answers_and_notices_signed_by_either_configured_key_are_accepted(tmp_path):
    merchant = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    standin = TransferStandin.generate(mchid="1900000001", appid=TERMS.appid, merchant_serial="MCH01",
                                       merchant_public_key=merchant.public_key())
    old_serial, old_key = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1", rsa.generate_private_key(public_exponent=65537,
                                                                                            key_size=2048)
    (tmp_path / "new.pem").write_text(standin.platform_public_pem)
    settings = PayoutSettings(wechat_platform_serial=old_serial, wechat_platform_key=_pem(old_key),
                              wechat_platform_keys={standin.platform_serial: str(tmp_path / "new.pem")})
    pems = settings.platform_pems()
    assert list(pems) == [old_serial, standin.platform_serial]   # the configured one stays first (user_name key)
    keys = {s: load_public_key(p) for s, p in pems.items()}

    client = TransferClient(base_url="http://wx", mchid=standin.mchid, merchant_serial="MCH01", merchant_key=merchant,
                            platform_keys=keys, platform_serial=old_serial,
                            transport=httpx.ASGITransport(app=app_for(standin)))
    body = rules.transfer_body(TERMS, bill_no="bill0001", openid="o-1", net_fen=1_000, user_name_cipher=None)
    assert isinstance(await client.create(body), BillFound)          # signed by the new key
    standin.platform_key, standin.platform_serial = old_key, old_serial
    assert isinstance(await client.query("bill0001"), BillFound)      # signed by the old key
    verifier = NotifyVerifier(platform_keys=keys, apiv3_key=standin.apiv3_key.encode())
    await standin.confirm("bill0001", notify=False)
    headers, raw = standin.build_notice("bill0001")
    _, resource = verifier.verify_and_decrypt(headers, raw)
    assert resource["out_bill_no"] == "bill0001"
    await client.aclose()

    # only the old key configured: the new key's answers decide nothing
    standin.platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    standin.platform_serial = "PUB_KEY_ID_0119000000012025120100000000000002"
    only_old = TransferClient(base_url="http://wx", mchid=standin.mchid, merchant_serial="MCH01", merchant_key=merchant,
                              platform_keys={old_serial: keys[old_serial]}, platform_serial=old_serial,
                              transport=httpx.ASGITransport(app=app_for(standin)))
    assert isinstance(await only_old.query("bill0001"), Unknown)
    await only_old.aclose()
