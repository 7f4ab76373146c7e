"""A small async client for WeChat's mini-program code API.

* access token from `POST /cgi-bin/stable_token` (normal mode), cached until shortly before it
  expires; on errcode 40001 / 42001 it is fetched again once and the call retried once. If the
  normal refetch hands back the very token WeChat just refused, one `force_refresh` follows
  (force_refresh is limited to 20 a day, so it is never the first resort).
* `getwxacodeunlimit`: success is image bytes, an error is JSON; the Content-Type decides."""
from __future__ import annotations

import asyncio
import time

import httpx
import structlog

from services.referral.domain.codes import is_valid_scene
from services.referral.domain.errors import WechatApiError

log = structlog.get_logger(__name__)

TOKEN_ERRORS = frozenset({40001, 42001})
#: refetch this long before WeChat's stated expiry (WeChat keeps old and new valid 5 minutes)
EXPIRY_MARGIN_S = 300


class WxaClient:
    def __init__(self, appid: str, secret: str, http: httpx.AsyncClient, *, api_base: str = "https://api.weixin.qq.com",
                 clock=time.monotonic) -> None:
        self.appid, self.secret, self.http = appid, secret, http
        self.api_base = api_base.rstrip("/")
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.token_fetches = 0

    async def _fetch_token(self, force: bool) -> str:
        self.token_fetches += 1
        resp = await self.http.post(f"{self.api_base}/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret, "force_refresh": force})
        data = resp.json()
        if resp.status_code != 200 or not data.get("access_token"):
            raise WechatApiError(int(data.get("errcode", -1)), str(data.get("errmsg", resp.text[:200])))
        self._token = data["access_token"]
        ttl = int(data.get("expires_in", 7200))
        self._expires_at = self._clock() + max(ttl - EXPIRY_MARGIN_S, min(ttl, 60))
        log.info("wechat_token_fetched", force_refresh=force, expires_in=ttl)
        return self._token

    async def access_token(self, *, refused: str | None = None) -> str:
        """The cached token; a fresh one when it is near expiry or WeChat refused `refused`."""
        async with self._lock:
            if self._token is not None and self._token != refused and self._clock() < self._expires_at:
                return self._token
            token = await self._fetch_token(force=False)
            if refused is not None and token == refused:
                token = await self._fetch_token(force=True)
            return token

    async def code_unlimited(self, scene: str, *, page: str, width: int = 430, check_path: bool = True,
                             env_version: str = "release") -> bytes:
        """The mini-program code (PNG bytes) whose scan opens `page` with `scene`."""
        if not is_valid_scene(scene):
            raise ValueError(f"scene {scene!r} is not a valid mini-program scene")
        body = {"scene": scene, "page": page.lstrip("/"), "width": width, "check_path": check_path,
                "env_version": env_version}
        token = await self.access_token()
        for attempt in (1, 2):
            resp = await self.http.post(f"{self.api_base}/wxa/getwxacodeunlimit", params={"access_token": token}, json=body)
            ctype = resp.headers.get("content-type", "")
            if resp.status_code == 200 and ctype.startswith("image/"):
                return resp.content
            try:
                data = resp.json()
            except ValueError:
                raise WechatApiError(-1, f"unexpected answer {resp.status_code} {ctype}") from None
            errcode = int(data.get("errcode", -1))
            if errcode in TOKEN_ERRORS and attempt == 1:
                log.info("wechat_token_refused", errcode=errcode)
                token = await self.access_token(refused=token)
                continue
            raise WechatApiError(errcode, str(data.get("errmsg", "")))
        raise AssertionError("unreachable")  # pragma: no cover
