"""Referral settings (env prefix REFERRAL_). The merchant's modes here are the defaults written
into the `merchant_settings` row at first start; operators change them later through
`PUT /v1/admin/settings`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class ReferralSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="REFERRAL_", extra="ignore")

    port: int = 8101

    # merchant defaults
    enrolment_mode: Literal["everyone", "first_order", "spend_threshold", "application", "operator"] = "everyone"
    spend_threshold_fen: int = Field(10000, ge=0)
    binding_mode: Literal["first_touch", "first_touch_window", "new_users_only", "last_touch"] = "first_touch"
    protection_window_days: int = Field(30, ge=1, le=3650)

    #: key for promoter codes a projection derives (same on every replay): its own key, at least
    #: 32 random bytes, never the identity key (a leaked code key must not mint identities)
    code_secret: str = Field("", repr=False)
    #: REFERRAL_PERSONAL_DATA_KEY: the master key wrapping each person's data key (crypto-shredding of
    #: the nickname and application note in referral's events): base64 of 32 random bytes, from the
    #: secret store; required, like the keys above (losing it makes the sealed fields unreadable)
    personal_data_key: str = Field("", repr=False)

    # posters
    #: without WeChat credentials the poster carries a QR of `<share_url_base>?scene=<code>`
    share_url_base: str = "https://shop.example.com/share"
    wechat_appid: str = ""
    wechat_secret: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_page: str = "pages/index/index"
    wechat_env_version: Literal["release", "trial", "develop"] = "release"
    wechat_check_path: bool = True
    wechat_code_width: int = Field(430, ge=280, le=1280)
    wechat_timeout_s: float = 10.0
    #: hosts (`host` or `host:port`, comma-separated) product images and avatars may be fetched from
    image_hosts: str = ""
    image_max_bytes: int = Field(5_000_000, ge=1024)

    def code_key(self) -> bytes:
        """The promoter-code key; a missing, placeholder or short one, or the identity key
        itself, raises ValueError (the service refuses to start)."""
        from shared.identity import check_secret

        check_secret(self.code_secret, "REFERRAL_CODE_SECRET")
        if self.code_secret in (self.identity_secret, self.identity_previous_secret):
            raise ValueError("REFERRAL_CODE_SECRET must differ from the identity keys")
        return self.code_secret.encode()

    def personal_data_master_key(self) -> bytes:
        """The crypto-shredding master key; a missing, placeholder or malformed one, or one of the
        other keys reused, raises ValueError (the service refuses to start)."""
        from shared.shredding import master_key

        key = master_key(self.personal_data_key, "REFERRAL_PERSONAL_DATA_KEY")
        if self.personal_data_key in (self.identity_secret, self.identity_previous_secret, self.code_secret):
            raise ValueError("REFERRAL_PERSONAL_DATA_KEY must differ from the identity and code keys")
        return key

    @property
    def wechat_enabled(self) -> bool:
        return bool(self.wechat_appid and self.wechat_secret and self.wechat_api_base)

    @property
    def allowed_image_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.image_hosts.split(",") if h.strip())
