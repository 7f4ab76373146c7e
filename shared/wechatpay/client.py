"""A small async APIv3 client: every request signed with the merchant key, every answer that
decides anything accepted only with a valid platform signature. Plumbing only: it knows
WeChat Pay's envelope (Authorization, Wechatpay-* answer headers, error bodies), not what any
service does with the answers.

Every call ends in exactly one of:
- `Found(data, http_status)`: a verified 2xx (`data` is `{}` for a 204);
- `NotFound(code)`: a verified 404 whose code says the object does not exist;
- `Refused(http_status, code, message)`: a definite refusal (4xx that is not "try again");
- `Unknown(reason, ...)`: timeout, network error, 5xx, 429, a retryable code, or an answer we
  cannot verify. After an unknown outcome the caller must QUERY before anything else.

Why the project's own client rather than wechatpayv3 (PyPI): its async client raises on
unexpected signature types, fetches `/v3/certificates` from inside a call on an unknown serial,
has no timestamp window on answers, and turns every failure into an exception the caller must
classify again. Here the four outcomes above are the whole contract, both key modes are a
plain `{serial: key}` map (two keys during a switch), and the stand-ins test it over real HTTP."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Union

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.wechatpay.crypto import FRESHNESS_S, authorization_header, notify_message, sign, verify

log = structlog.get_logger(__name__)

#: refusals that say "not now" rather than "never"
RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "FREQUENCY_LIMIT_EXCEED", "NOT_ENOUGH",
                             "RATELIMIT_EXCEEDED", "BANKERROR", "USERPAYING"})
#: 404 codes that mean "no such object" (transfer bills, transactions, refunds)
NOT_FOUND_CODES = frozenset({"NOT_FOUND", "ORDER_NOT_EXIST", "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS", ""})


@dataclass(frozen=True)
class Found:
    data: dict[str, Any]
    http_status: int


@dataclass(frozen=True)
class NotFound:
    http_status: int = 404
    code: str = ""


@dataclass(frozen=True)
class Refused:
    http_status: int
    code: str
    message: str


@dataclass(frozen=True)
class Unknown:
    reason: str
    http_status: int | None = None
    code: str | None = None


CallResult = Union[Found, NotFound, Refused, Unknown]


def describe(res: CallResult) -> str:
    if isinstance(res, Refused):
        return f"refused {res.http_status} {res.code}: {res.message}"
    if isinstance(res, Unknown):
        return f"unknown outcome: {res.reason}"
    if isinstance(res, NotFound):
        return f"not found {res.code}".strip()
    return "found"


class WeChatPayClient:
    """One merchant's signed calls to `base_url` (https://api.mch.weixin.qq.com in production)."""

    def __init__(
        self, *, base_url: str, mchid: str, merchant_serial: str, merchant_key: rsa.RSAPrivateKey,
        platform_keys: Mapping[str, rsa.RSAPublicKey], timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None, user_agent: str = "fenxiao/1",
        retryable_codes: Iterable[str] = RETRYABLE_CODES,
    ) -> None:
        if not platform_keys:
            raise ValueError("at least one platform key is needed to verify answers")
        self.mchid, self.merchant_serial, self.merchant_key = mchid, merchant_serial, merchant_key
        self.platform_keys = dict(platform_keys)
        self.timeout_s, self.user_agent = timeout_s, user_agent
        self.retryable_codes = frozenset(retryable_codes)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    def sign(self, message: bytes) -> str:
        """Base64 RSA-SHA256 with the merchant key (e.g. wx.requestPayment's paySign)."""
        return sign(self.merchant_key, message)

    async def request(self, method: str, path: str, body: Mapping[str, Any] | None = None, *,
                      params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                      not_found_codes: Iterable[str] = NOT_FOUND_CODES) -> CallResult:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode() if body is not None else b""
        url = self._http.base_url.join(path)
        if params:
            url = url.copy_merge_params(dict(params))
        try:
            resp = await self._send(method, url, raw, headers or {})
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return Unknown("timeout")
        except (httpx.HTTPError, OSError) as exc:
            return Unknown(f"network: {type(exc).__name__}")
        return self._interpret(resp, frozenset(not_found_codes))

    async def download(self, url: str) -> bytes | Unknown | Refused:
        """A bill file: a signed GET whose answer is NOT signed (check its hash instead)."""
        target = httpx.URL(url)
        if not target.is_absolute_url:
            target = self._http.base_url.join(url)
        try:
            resp = await self._send("GET", target, b"", {"Accept": "*/*"})
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return Unknown("timeout")
        except (httpx.HTTPError, OSError) as exc:
            return Unknown(f"network: {type(exc).__name__}")
        if resp.status_code == 200:
            return resp.content
        if resp.status_code >= 500 or resp.status_code == 429:
            return Unknown(f"http {resp.status_code}", resp.status_code)
        return Refused(resp.status_code, f"HTTP_{resp.status_code}", resp.text[:200])

    async def _send(self, method: str, url: httpx.URL, raw: bytes, extra: Mapping[str, str]) -> httpx.Response:
        path_with_query = url.raw_path.decode()
        headers = {
            "Authorization": authorization_header(mchid=self.mchid, serial_no=self.merchant_serial,
                                                  private_key=self.merchant_key, method=method,
                                                  path_with_query=path_with_query, body=raw),
            "Accept": "application/json", "User-Agent": self.user_agent, **extra,
        }
        if raw:
            headers["Content-Type"] = "application/json"
        # httpx's own timeout does not reach every transport (e.g. ASGI); bound the whole call
        return await asyncio.wait_for(self._http.request(method, url, content=raw or None, headers=headers),
                                      timeout=self.timeout_s)

    def _interpret(self, resp: httpx.Response, not_found_codes: frozenset[str]) -> CallResult:
        status, content = resp.status_code, resp.content
        signed = self.verified(resp.headers, content)
        try:
            data = json.loads(content) if content else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        code = str(data.get("code") or "")
        if status >= 500 or status == 429:
            return Unknown(f"http {status}", status, code or None)
        if 200 <= status < 300:
            if not signed:  # what we cannot verify decides nothing
                log.warning("wechatpay_response_unverified", status=status)
                return Unknown("unverified response", status)
            return Found(data, status)
        if status == 404 and code in not_found_codes:
            return NotFound(status, code) if signed else Unknown("unverified not-found", status, code or None)
        if code in self.retryable_codes:
            return Unknown(f"retryable {code}", status, code)
        return Refused(status, code or f"HTTP_{status}", str(data.get("message", "")))

    def verified(self, headers: httpx.Headers | Mapping[str, str], body: bytes) -> bool:
        h = {k.lower(): v for k, v in headers.items()}
        serial, sig = h.get("wechatpay-serial"), h.get("wechatpay-signature")
        ts, nonce = h.get("wechatpay-timestamp"), h.get("wechatpay-nonce")
        if not (serial and sig and ts and nonce) or not ts.isdigit():
            return False
        if abs(time.time() - int(ts)) >= FRESHNESS_S:
            return False
        key = self.platform_keys.get(serial)
        return key is not None and verify(key, notify_message(ts, nonce, body), sig)
