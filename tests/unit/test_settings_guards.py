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


# ---- crypto-shredding's master keys: guarded like every other secret (shared.identity.check_secret) ----

def _master() -> str:
    from shared.shredding import new_master_key
    return new_master_key()


@pytest.mark.parametrize("bad", ["", "change-me", "c2hvcnQ=", "x" * 44, "CHANGE_ME_base64_of_32_random_bytes_here_xx="])
def test_referral_refuses_to_start_without_a_sound_personal_data_key(bad):
    """No development default: missing, a placeholder, too short or not base64 of 32 bytes, the app is not built."""
    from services.referral.main import create_app
    from services.referral.settings import ReferralSettings

    with pytest.raises(ValueError, match="REFERRAL_PERSONAL_DATA_KEY"):
        create_app(ReferralSettings(personal_data_key=bad))
    good = _master()
    assert len(ReferralSettings(personal_data_key=good).personal_data_master_key()) == 32
    create_app(ReferralSettings(personal_data_key=good))  # the same settings with a sound key start
    assert good not in repr(ReferralSettings(personal_data_key=good))


def test_referral_personal_data_key_is_not_another_key_reused():
    from services.referral.settings import ReferralSettings

    key = _master()
    for reused in ({"code_secret": key}, {"FENXIAO_IDENTITY_SECRET": key}):
        with pytest.raises(ValueError, match="must differ"):
            ReferralSettings(personal_data_key=key, **reused).personal_data_master_key()


@pytest.mark.parametrize("bad", ["", "change-me", "c2hvcnQ=", "x" * 44])
def test_payout_refuses_to_start_without_a_sound_identity_master_key(bad):
    from services.payout.main import create_app

    with pytest.raises(ValueError, match="PAYOUT_IDENTITY_MASTER_KEY"):
        create_app(PayoutSettings(identity_master_key=bad))
    good = _master()
    assert len(PayoutSettings(identity_master_key=good).identity_master()) == 32
    create_app(PayoutSettings(identity_master_key=good))
    assert good not in repr(PayoutSettings(identity_master_key=good))
    with pytest.raises(ValueError, match="must differ"):
        PayoutSettings(identity_master_key=good, FENXIAO_IDENTITY_SECRET=good).identity_master()
