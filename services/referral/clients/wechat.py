"""A small async client for WeChat's mini-program code API.

* access token: `shared.wechat.StableToken` (stable_token in normal mode, cached; on errcode
  40001 / 42001 fetched again once and the call retried once; a `force_refresh` only when the
  normal refetch hands back the refused token).
* `getwxacodeunlimit`: success is image bytes, an error is JSON; the Content-Type decides."""
from __future__ import annotations

import time

import httpx
import structlog

from services.referral.domain.codes import is_valid_scene
from services.referral.domain.errors import WechatApiError
from shared.wechat import TOKEN_ERRORS, StableToken  # noqa: F401  (TOKEN_ERRORS re-exported)

log = structlog.get_logger(__name__)


class WxaClient:
    def __init__(self, appid: str, secret: str, http: httpx.AsyncClient, *, api_base: str = "https://api.weixin.qq.com",
                 clock=time.monotonic, token: StableToken | None = None) -> None:
        self.appid, self.secret, self.http = appid, secret, http
        self.api_base = api_base.rstrip("/")
        self.token = token or StableToken(appid, secret, http, api_base=api_base, clock=clock, error=WechatApiError)

    @property
    def token_fetches(self) -> int:
        return self.token.fetches

    async def access_token(self, *, refused: str | None = None) -> str:
        return await self.token.access_token(refused=refused)

    async def code_unlimited(self, scene: str, *, page: str, width: int = 430, check_path: bool = True,
                             env_version: str = "release") -> bytes:
        """The mini-program code (PNG bytes) whose scan opens `page` with `scene`."""
        if not is_valid_scene(scene):
            raise ValueError(f"scene {scene!r} is not a valid mini-program scene")
        body = {"scene": scene, "page": page.lstrip("/"), "width": width, "check_path": check_path,
                "env_version": env_version}

        async def call(token: str) -> tuple[int, bytes | str]:
            resp = await self.http.post(f"{self.api_base}/wxa/getwxacodeunlimit", params={"access_token": token}, json=body)
            ctype = resp.headers.get("content-type", "")
            if resp.status_code == 200 and ctype.startswith("image/"):
                return 0, resp.content
            try:
                data = resp.json()
            except ValueError:
                raise WechatApiError(-1, f"unexpected answer {resp.status_code} {ctype}") from None
            return int(data.get("errcode", -1)), str(data.get("errmsg", ""))

        errcode, result = await self.token.call_with_token(call)
        if errcode == 0:
            return result  # type: ignore[return-value]
        raise WechatApiError(errcode, result)  # type: ignore[arg-type]
