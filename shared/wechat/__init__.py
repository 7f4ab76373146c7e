"""WeChat server-API plumbing shared by the services that call it (no business rules):
the stable access token with its refusal handling."""
from shared.wechat.token import TOKEN_ERRORS, StableToken, WechatCallError

__all__ = ["TOKEN_ERRORS", "StableToken", "WechatCallError"]
