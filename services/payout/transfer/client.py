"""The merchant transfer (商家转账, 2025 version) calls, over the shared signing client
(`shared.wechatpay.client.WeChatPayClient`: requests signed with the merchant key, answers
accepted only with a valid platform signature, any of the platform keys configured; two during
a switch of key modes). Every outcome is one of: the bill as WeChat has it, no such bill, a
definite refusal, or unknown (timeout, network error, 5xx, 429, an unverifiable answer): after
an unknown outcome the caller must query before anything else."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.wechatpay import oaep_encrypt
from shared.wechatpay.client import Found, NotFound, Refused, Unknown, WeChatPayClient

CREATE_PATH = "/v3/fund-app/mch-transfer/transfer-bills"
QUERY_PATH = "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{out_bill_no}"
#: refusals that say "not now" rather than "never": keep retrying with the same bill number
RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "FREQUENCY_LIMITED", "FREQUENCY_LIMIT_EXCEED", "NOT_ENOUGH", "RATELIMIT_EXCEEDED"})
NOT_FOUND_CODES = frozenset({"NOT_FOUND", ""})

__all__ = ["BillFound", "BillNotFound", "CallResult", "Refused", "TransferClient", "Unknown"]


@dataclass(frozen=True)
class BillFound:
    bill: dict[str, Any]
    http_status: int


@dataclass(frozen=True)
class BillNotFound:
    http_status: int = 404


CallResult = Union[BillFound, BillNotFound, Refused, Unknown]


class TransferClient:
    def __init__(
        self, *, base_url: str, mchid: str, merchant_serial: str, merchant_key: rsa.RSAPrivateKey,
        platform_keys: Mapping[str, rsa.RSAPublicKey], platform_serial: str, timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if platform_serial not in platform_keys:
            raise ValueError("platform_serial must name one of platform_keys")
        self.mchid, self.platform_serial, self.timeout_s = mchid, platform_serial, timeout_s
        self.api = WeChatPayClient(base_url=base_url, mchid=mchid, merchant_serial=merchant_serial,
                                   merchant_key=merchant_key, platform_keys=platform_keys, timeout_s=timeout_s,
                                   transport=transport, user_agent="fenxiao-payout/1", retryable_codes=RETRYABLE_CODES)
        self.platform_keys = self.api.platform_keys

    async def aclose(self) -> None:
        await self.api.aclose()

    # -- sensitive fields ----------------------------------------------------------------------
    def encrypt_name(self, real_name: str) -> tuple[str, str]:
        """(ciphertext, serial): `user_name` encrypted with the platform key, which WeChat needs
        named in the `Wechatpay-Serial` header of the create call."""
        return oaep_encrypt(self.platform_keys[self.platform_serial], real_name), self.platform_serial

    # -- calls ---------------------------------------------------------------------------------
    async def create(self, body: Mapping[str, Any], *, name_serial: str | None = None) -> CallResult:
        """`POST transfer-bills`. Retrying with the same out_bill_no and body is safe."""
        headers = {"Wechatpay-Serial": name_serial} if "user_name" in body and name_serial else {}
        return _bill(await self.api.request("POST", CREATE_PATH, body, headers=headers, not_found_codes=NOT_FOUND_CODES))

    async def query(self, out_bill_no: str) -> CallResult:
        """`GET transfer-bills/out-bill-no/{out_bill_no}`."""
        return _bill(await self.api.request("GET", QUERY_PATH.format(out_bill_no=out_bill_no),
                                            not_found_codes=NOT_FOUND_CODES))


def _bill(res) -> CallResult:
    if isinstance(res, Found):
        return BillFound(res.data, res.http_status)
    if isinstance(res, NotFound):
        return BillNotFound(res.http_status)
    return res
