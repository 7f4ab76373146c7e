"""The mini-program's access token from `POST /cgi-bin/stable_token` (normal mode), cached
until shortly before it expires.

* A caller whose call WeChat refused with errcode 40001 / 42001 asks again with
  `access_token(refused=token)`: the token is fetched again (normal mode). If that normal
  refetch hands back the very token WeChat just refused, one `force_refresh` follows
  (force_refresh is limited to 20 a day, so it is never the first resort).
* `call_with_token` runs one API call with that rule: retried once after a refused token.

Moved here from the referral poster client so that every service calling WeChat's server API
(referral's codes, engagement's subscribe messages) handles the token the same way."""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

import httpx
import structlog

log = structlog.get_logger(__name__)

TOKEN_ERRORS = frozenset({40001, 42001})
#: refetch this long before WeChat's stated expiry (WeChat keeps old and new valid 5 minutes)
EXPIRY_MARGIN_S = 300

T = TypeVar("T")


class WechatCallError(Exception):
    """WeChat answered with an error code (the default error; a service may pass its own)."""

    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat error {errcode}: {errmsg}")
        self.errcode, self.errmsg = errcode, errmsg


class StableToken:
    """One app's token. `error` builds the exception raised when WeChat refuses the token
    request itself: `error(errcode, errmsg)`."""

    def __init__(self, appid: str, secret: str, http: httpx.AsyncClient, *, api_base: str = "https://api.weixin.qq.com",
                 clock=time.monotonic, error: Callable[[int, str], Exception] = WechatCallError) -> None:
        self.appid, self.secret, self.http = appid, secret, http
        self.api_base = api_base.rstrip("/")
        self._clock = clock
        self._error = error
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _fetch(self, force: bool) -> str:
        self.fetches += 1
        resp = await self.http.post(f"{self.api_base}/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret, "force_refresh": force})
        data = resp.json()
        if resp.status_code != 200 or not data.get("access_token"):
            raise self._error(int(data.get("errcode", -1)), str(data.get("errmsg", resp.text[:200])))
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
            token = await self._fetch(force=False)
            if refused is not None and token == refused:
                token = await self._fetch(force=True)
            return token

    async def call_with_token(self, call: Callable[[str], Awaitable[tuple[int, T]]]) -> tuple[int, T]:
        """Run `call(token) -> (errcode, result)`; on 40001/42001 once more with a fresh token.
        Returns the last (errcode, result)."""
        token = await self.access_token()
        errcode, result = await call(token)
        if errcode in TOKEN_ERRORS:
            log.info("wechat_token_refused", errcode=errcode)
            token = await self.access_token(refused=token)
            errcode, result = await call(token)
        return errcode, result
