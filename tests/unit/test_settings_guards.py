"""Settings that would weaken security refuse to start."""
import pytest
from pydantic import ValidationError

from services.orders.settings import OrdersSettings
from services.payout.settings import PayoutSettings


def test_notice_freshness_is_capped_at_300_seconds():
    assert OrdersSettings(wechatpay_notice_freshness_s=300).wechatpay_notice_freshness_s == 300
    with pytest.raises(ValidationError):
        OrdersSettings(wechatpay_notice_freshness_s=301)


def test_payout_needs_mchid_and_appid_when_transfer_keys_are_set():
    keys = dict(wechat_merchant_key="-----BEGIN PRIVATE KEY-----x", wechat_merchant_serial="S",
                wechat_platform_key="-----BEGIN PUBLIC KEY-----x", wechat_platform_serial="P", wechat_apiv3_key="k" * 32)
    with pytest.raises(ValidationError, match="MCHID"):
        PayoutSettings(**keys)
    with pytest.raises(ValidationError):
        PayoutSettings(**keys, wechat_mchid="1900000109")
    assert PayoutSettings(**keys, wechat_mchid="1900000109", wechat_appid="wx1").transfer_configured
    # no realistic-looking defaults
    assert (PayoutSettings().wechat_mchid, PayoutSettings().wechat_appid) == ("", "")
