"""Console settings (env prefix CONSOLE_)."""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class ConsoleSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    db_schema: str = Field("console", validation_alias="CONSOLE_SCHEMA")
    port: int = 8106
    #: the services' HTTP APIs the console calls (it reads no other service's tables)
    referral_url: str = "http://127.0.0.1:8101"
    commission_url: str = "http://127.0.0.1:8103"
    payout_url: str = "http://127.0.0.1:8104"
    backend_timeout_s: float = 10.0
    #: a session ends after this long without a request, and in any case after `session_max_s`
    session_idle_s: int = 30 * 60
    session_max_s: int = 12 * 3600
    #: set the Secure flag on the cookies (behind TLS in production)
    cookie_secure: bool = False
    business_timezone: str = "Asia/Shanghai"
    overview_days: int = 30
    #: demo/test accounts created at start: "name:role:password;name:role:password"
    bootstrap_operators: str = ""
    #: the audit replays run as subprocesses with these schemas (the services' own)
    commission_schema: str = "commission"
    payout_schema: str = "payout"
    audit_timeout_s: float = 300.0
