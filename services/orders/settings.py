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
    #: `PUB_KEY_ID_...`), given inline or as a file path; during a switch of modes both are configured.
    #: JSON in the environment.
    wechatpay_platform_keys: dict[str, str] = Field(default_factory=dict)
    #: |now - Wechatpay-Timestamp| must be below this
    wechatpay_notice_freshness_s: int = Field(300, ge=1, le=300)  # never more: stale notices are replays

    # -- outgoing calls (prepay, close, query, refunds, bills); off while the base URL is empty --
    #: https://api.mch.weixin.qq.com in production (the stand-in locally)
    wechatpay_base_url: str = ""
    #: the merchant API certificate's serial and private key (PEM text or a file path)
    wechatpay_merchant_serial: str = ""
    wechatpay_merchant_key: str = ""
    #: this service's notify URL as WeChat reaches it (https, no query string), sent with every prepay and refund
    wechatpay_notify_url: str = ""
    wechatpay_timeout_s: float = Field(10.0, gt=0)
    #: `description` of the JSAPI order (<= 127 characters, shown to the buyer)
    wechatpay_description: str = Field("商城订单", min_length=1, max_length=127)
    #: query an order that has a prepay but no notice this long after the prepay, then back off
    payment_query_after_s: float = Field(300.0, gt=0)
    #: query a submitted refund still PROCESSING (or ABNORMAL) this long after, then back off
    refund_query_after_s: float = Field(300.0, gt=0)
    #: longest wait between two queries of one order or refund
    query_max_interval_s: float = Field(3600.0, gt=0)
    #: how often the refund submitter and the payment recovery look for work
    wechatpay_follow_interval_s: float = Field(2.0, gt=0)
    #: a claimed order/refund is left to its claimer this long (then another replica may take it)
    wechatpay_lease_s: float = Field(60.0, gt=0)
    #: daily reconciliation of the previous day's bills at this local time (Asia/Shanghai), "" = off
    reconcile_at: str = "10:30"
    reconcile_timezone: str = "Asia/Shanghai"

    @property
    def calls_configured(self) -> bool:
        return bool(self.wechatpay_base_url and self.wechatpay_merchant_serial and self.wechatpay_merchant_key
                    and self.wechatpay_platform_keys)
