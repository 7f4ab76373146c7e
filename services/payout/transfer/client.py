"""A small async client for WeChat Pay's merchant transfer (商家转账, 2025 version).

Requests are signed with the merchant key (`Authorization: WECHATPAY2-SHA256-RSA2048 ...`);
answers that decide anything are accepted only with a valid platform signature. Every
outcome is one of: the bill as WeChat has it, no such bill, a definite refusal, or unknown
(timeout, network error, 5xx, 429, an unverifiable answer): after an unknown outcome the
caller must query before anything else."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any, Mapping, Union

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.wechatpay import authorization_header, notify_message, oaep_encrypt, verify
from shared.wechatpay.crypto import FRESHNESS_S

log = structlog.get_logger(__name__)

CREATE_PATH = "/v3/fund-app/mch-transfer/transfer-bills"
QUERY_PATH = "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}"
#: refusals that say "not now" rather than "never": keep retrying with the same bill number
RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "FREQUENCY_LIMIT_EXCEED", "NOT_ENOUGH", "RATELIMIT_EXCEEDED"})


@dataclass(frozen=True)
class BillFound:
    bill: dict[str, Any]
    http_status: int


@dataclass(frozen=True)
class BillNotFound:
    http_status: int = 404


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


CallResult = Union[BillFound, BillNotFound, Refused, Unknown]


class TransferClient:
    def __init__(
        self, *, base_url: str, mchid: str, merchant_serial: str, merchant_key: rsa.RSAPrivateKey,
        platform_keys: Mapping[str, rsa.RSAPublicKey], platform_serial: str, timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if platform_serial not in platform_keys:
            raise ValueError("platform_serial must name one of platform_keys")
        self.mchid, self.merchant_serial, self.merchant_key = mchid, merchant_serial, merchant_key
        self.platform_keys, self.platform_serial = dict(platform_keys), platform_serial
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- sensitive fields ----------------------------------------------------------------------
    def encrypt_name(self, real_name: str) -> tuple[str, str]:
        """(ciphertext, serial): `user_name` encrypted with the platform key, which WeChat needs
        named in the `Wechatpay-Serial` header of the create call."""
        return oaep_encrypt(self.platform_keys[self.platform_serial], real_name), self.platform_serial

    # -- calls ---------------------------------------------------------------------------------
    async def create(self, body: Mapping[str, Any], *, name_serial: str | None = None) -> CallResult:
        """`POST transfer-bills`. Retrying with the same out_bill_no and body is safe."""
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Wechatpay-Serial": name_serial} if "user_name" in body and name_serial else {}
        return await self._call("POST", CREATE_PATH, raw, headers)

    async def query(self, out_bill_no: str) -> CallResult:
        """`GET transfer-bills/out-bill-no/{out_bill_no}`."""
        return await self._call("GET", QUERY_PATH.format(out_bill_no=out_bill_no), b"", {})

    async def _call(self, method: str, path: str, raw: bytes, extra: dict[str, str]) -> CallResult:
        url = self._http.base_url.join(path)
        path_with_query = url.raw_path.decode()
        headers = {
            "Authorization": authorization_header(mchid=self.mchid, serial_no=self.merchant_serial,
                                                  private_key=self.merchant_key, method=method,
                                                  path_with_query=path_with_query, body=raw),
            "Accept": "application/json", "User-Agent": "fenxiao-payout/1", **extra,
        }
        if raw:
            headers["Content-Type"] = "application/json"
        try:
            # httpx's own timeout does not reach every transport (e.g. ASGI); bound the whole call
            resp = await asyncio.wait_for(self._http.request(method, url, content=raw or None, headers=headers),
                                          timeout=self.timeout_s)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            return Unknown("timeout")
        except (httpx.HTTPError, OSError) as exc:
            return Unknown(f"network: {type(exc).__name__}")
        return self._interpret(resp)

    def _interpret(self, resp: httpx.Response) -> CallResult:
        status, content = resp.status_code, resp.content
        signed = self._verified(resp.headers, content)
        try:
            data = json.loads(content) if content else {}
        except ValueError:
            data = {}
        code = str(data.get("code") or "") if isinstance(data, dict) else ""
        if status >= 500 or status == 429:
            return Unknown(f"http {status}", status, code or None)
        if 200 <= status < 300:
            if not signed:  # what we cannot verify decides nothing
                log.warning("transfer_response_unverified", status=status)
                return Unknown("unverified response", status)
            return BillFound(data, status)
        if status == 404 and code in ("NOT_FOUND", ""):
            return BillNotFound(status) if signed else Unknown("unverified not-found", status, code or None)
        if code in RETRYABLE_CODES:
            return Unknown(f"retryable {code}", status, code)
        return Refused(status, code or f"HTTP_{status}", str(data.get("message", "")) if isinstance(data, dict) else "")

    def _verified(self, headers: httpx.Headers, body: bytes) -> bool:
        serial, sig = headers.get("Wechatpay-Serial"), headers.get("Wechatpay-Signature")
        ts, nonce = headers.get("Wechatpay-Timestamp"), headers.get("Wechatpay-Nonce")
        if not (serial and sig and ts and nonce) or not ts.isdigit():
            return False
        if abs(time.time() - int(ts)) >= FRESHNESS_S:
            return False
        key = self.platform_keys.get(serial)
        return key is not None and verify(key, notify_message(ts, nonce, body), sig)
