"""Payout settings (env prefix `PAYOUT_`), e.g. PAYOUT_AUTO_APPROVE_MAX_FEN=10000."""
from __future__ import annotations


from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.payout.domain.policy import WithdrawalPolicy
from services.payout.domain.withdrawal import TransferTerms
from shared.settings import CommonSettings
from shared.wechatpay import read_pem


class PayoutSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="PAYOUT_", extra="ignore")

    port: int = 8104

    # -- the merchant's withdrawal rules --------------------------------------------------------
    min_withdrawal_fen: int = 100
    max_withdrawal_fen: int = 500_000
    fee_bp: int = Field(0, description="fee in basis points of the amount (100 = 1%), rounded down")
    fee_max_fen: int = Field(0, description="the fee never exceeds this")
    daily_count_max: int = 3
    daily_amount_max_fen: int = 2_000_000
    auto_approve_max_fen: int = Field(10_000, description="amounts up to this are approved without an operator")
    dual_approval_above_fen: int = Field(200_000, ge=0,
                                         description="amounts above this need two different approvers (role finance)")
    real_name_min_fen: int = 200_000
    business_timezone: str = "Asia/Shanghai"

    #: PAYOUT_IDENTITY_MASTER_KEY: the master key wrapping each person's data key (payee identity,
    #: crypto-shredding; docs/tax.md): base64 of 32 random bytes, from the secret store; required
    #: (`identity_master`, checked before the service serves; losing it makes the identities unreadable)
    identity_master_key: str = Field("", repr=False)

    # -- WeChat Pay merchant transfer ------------------------------------------------------------
    wechat_base_url: str = "http://127.0.0.1:8199"
    #: the merchant number and the mini-program appid (no defaults: transfers need the real ones)
    wechat_mchid: str = ""
    wechat_appid: str = ""
    wechat_merchant_serial: str = ""
    #: merchant API private key: PEM text or a file path
    wechat_merchant_key: str = ""
    #: WeChat Pay public key id (PUB_KEY_ID_...) or platform certificate serial
    wechat_platform_serial: str = ""
    #: WeChat Pay public key or platform certificate: PEM text or a file path
    wechat_platform_key: str = ""
    #: further platform keys answers and notices may be signed with, JSON
    #: `{"<serial or PUB_KEY_ID_...>": "<PEM or path>"}`: during a switch between certificate mode
    #: and public-key mode both are accepted (the one above stays the key `user_name` is encrypted with)
    wechat_platform_keys: dict[str, str] = Field(default_factory=dict)
    #: the APIv3 key (32 ASCII characters) that encrypts notice resources
    wechat_apiv3_key: str = ""
    wechat_notify_url: str = "http://127.0.0.1:8104/v1/wechatpay/transfer-notify"
    wechat_timeout_s: float = 10.0
    transfer_remark: str = "推广佣金提现"
    report_job_type: str = "推广员"
    report_pay_note: str = "推广佣金"

    # -- following bills -------------------------------------------------------------------------
    follow_interval_s: float = Field(2.0, description="how often the follower looks for due bills")
    retry_base_s: float = Field(2.0, description="first wait after an unknown outcome; doubles each time")
    retry_max_s: float = 300.0
    open_bill_query_s: float = Field(600.0, description="query an open bill this often if no notice came")
    lease_s: float = 60.0

    @model_validator(mode="after")
    def _check(self) -> "PayoutSettings":
        self.policy()  # refuse a bad configuration at start, not at the first request
        self.terms()
        if self.wechat_apiv3_key and len(self.wechat_apiv3_key.encode()) != 32:
            raise ValueError("PAYOUT_WECHAT_APIV3_KEY must be 32 bytes")
        if self.transfer_configured and not (self.wechat_mchid and self.wechat_appid):
            raise ValueError("PAYOUT_WECHAT_MCHID and PAYOUT_WECHAT_APPID are required when the transfer keys are set")
        return self

    def identity_master(self) -> bytes:
        """The payee-identity master key; a missing, placeholder or malformed one, or an identity key
        reused, raises ValueError (the service refuses to start, as without its identity key)."""
        from shared.shredding import master_key

        key = master_key(self.identity_master_key, "PAYOUT_IDENTITY_MASTER_KEY")
        if self.identity_master_key in (self.identity_secret, self.identity_previous_secret):
            raise ValueError("PAYOUT_IDENTITY_MASTER_KEY must differ from the identity keys")
        return key

    def policy(self) -> WithdrawalPolicy:
        return WithdrawalPolicy(
            min_fen=self.min_withdrawal_fen, max_fen=self.max_withdrawal_fen, fee_bp=self.fee_bp,
            fee_max_fen=self.fee_max_fen, daily_count_max=self.daily_count_max,
            daily_amount_max_fen=self.daily_amount_max_fen, auto_approve_max_fen=self.auto_approve_max_fen,
            real_name_min_fen=self.real_name_min_fen,
        )

    def terms(self) -> TransferTerms:
        return TransferTerms(appid=self.wechat_appid, notify_url=self.wechat_notify_url, remark=self.transfer_remark,
                             job_type=self.report_job_type, pay_note=self.report_pay_note)

    def platform_pems(self) -> dict[str, str]:
        """Every accepted platform key: serial -> PEM (the active one first)."""
        out = {self.wechat_platform_serial: read_pem(self.wechat_platform_key)} if self.wechat_platform_serial else {}
        for serial, pem in self.wechat_platform_keys.items():
            out.setdefault(serial, read_pem(pem))
        return out

    @property
    def transfer_configured(self) -> bool:
        return bool(self.wechat_merchant_key and self.wechat_merchant_serial and self.wechat_platform_key
                    and self.wechat_platform_serial and self.wechat_apiv3_key)
