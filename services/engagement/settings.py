"""Engagement settings (env prefix `ENGAGEMENT_`), e.g. ENGAGEMENT_LEADERBOARD_TOP=20."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class EngagementSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="ENGAGEMENT_", extra="ignore")

    port: int = 8105
    business_timezone: str = "Asia/Shanghai"
    leaderboard_top: int = Field(10, ge=1, le=100)
    top_n_of_month: int = Field(10, ge=1, le=100, description="the monthly honour goes to this many by settled commission")
    stream_heartbeat_s: float = Field(15.0, gt=0, description="a comment line this often keeps proxies from closing the stream")
    stream_retry_ms: int = Field(2000, ge=100, description="the reconnect delay the stream asks the client for")

    # -- WeChat subscribe messages ---------------------------------------------------------------
    wechat_appid: str = ""
    wechat_secret: str = ""
    wechat_api_base: str = "https://api.weixin.qq.com"
    wechat_timeout_s: float = 5.0
    miniprogram_state: Literal["developer", "trial", "formal"] = "formal"
    lang: Literal["zh_CN", "en_US", "zh_HK", "zh_TW"] = "zh_CN"
    send_interval_s: float = Field(2.0, gt=0, description="the sender looks for queued messages at least this often")
    send_stale_s: float = Field(60.0, gt=0, description="a send left `sending` this long is recorded unknown, never retried")

    @property
    def wechat_enabled(self) -> bool:
        return bool(self.wechat_appid and self.wechat_secret)
