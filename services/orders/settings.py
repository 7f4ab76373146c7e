"""Orders settings, from ORDERS_* environment variables (connection settings are common)."""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class OrdersSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERS_", extra="ignore")

    port: int = 8102
    #: unpaid orders are cancelled this long after they were placed
    unpaid_timeout_minutes: int = Field(30, ge=1)
    #: paid orders without a receipt confirmation complete this long after payment
    auto_complete_days: int = Field(7, ge=0)
    #: how often the sweeper looks for due orders, and how many it takes per transaction
    sweep_interval_s: float = Field(5.0, gt=0)
    sweep_batch: int = Field(500, ge=1)

    #: our merchant number and mini-program appid: a notice for anyone else is refused
    wechatpay_mchid: str = ""
    wechatpay_appid: str = ""
    #: the APIv3 key (32 ASCII characters) that encrypts notice resources
    wechatpay_apiv3_key: str = ""
    #: `Wechatpay-Serial` -> PEM (platform certificate, or the WeChat Pay public key for a
    #: `PUB_KEY_ID_...`); during a switch of modes both are configured. JSON in the environment.
    wechatpay_platform_keys: dict[str, str] = Field(default_factory=dict)
    #: |now - Wechatpay-Timestamp| must be below this
    wechatpay_notice_freshness_s: int = Field(300, ge=1)
