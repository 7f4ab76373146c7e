"""The WeChat Pay APIv3 endpoints orders calls, each returning the shared client's outcome
(Found / NotFound / Refused / Unknown). No decisions here."""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import quote

from shared.wechatpay.client import CallResult, Refused, Unknown, WeChatPayClient

JSAPI_PATH = "/v3/pay/transactions/jsapi"
TRADE_PATH = "/v3/pay/transactions/out-trade-no/{no}"
CLOSE_PATH = "/v3/pay/transactions/out-trade-no/{no}/close"
REFUNDS_PATH = "/v3/refund/domestic/refunds"
REFUND_PATH = "/v3/refund/domestic/refunds/{no}"
TRADE_BILL_PATH = "/v3/bill/tradebill"
FUND_FLOW_BILL_PATH = "/v3/bill/fundflowbill"


class PayCalls:
    def __init__(self, api: WeChatPayClient, *, mchid: str) -> None:
        self.api, self.mchid = api, mchid

    async def aclose(self) -> None:
        await self.api.aclose()

    def sign(self, message: bytes) -> str:
        return self.api.sign(message)

    async def jsapi(self, body: Mapping[str, Any]) -> CallResult:
        return await self.api.request("POST", JSAPI_PATH, body)

    async def close(self, out_trade_no: str) -> CallResult:
        """204 also when repeated, and when a payment raced it: proves nothing, query after."""
        return await self.api.request("POST", CLOSE_PATH.format(no=quote(out_trade_no, safe="")), {"mchid": self.mchid})

    async def query_trade(self, out_trade_no: str) -> CallResult:
        return await self.api.request("GET", TRADE_PATH.format(no=quote(out_trade_no, safe="")),
                                      params={"mchid": self.mchid})

    async def submit_refund(self, body: Mapping[str, Any]) -> CallResult:
        return await self.api.request("POST", REFUNDS_PATH, body)

    async def query_refund(self, out_refund_no: str) -> CallResult:
        return await self.api.request("GET", REFUND_PATH.format(no=quote(out_refund_no, safe="")))

    async def bill(self, kind: str, bill_date: str) -> CallResult:
        """kind: "trade" (bill_type=ALL) or "fund_flow" (account_type=BASIC), gzip."""
        if kind == "trade":
            return await self.api.request("GET", TRADE_BILL_PATH,
                                          params={"bill_date": bill_date, "bill_type": "ALL", "tar_type": "GZIP"})
        return await self.api.request("GET", FUND_FLOW_BILL_PATH,
                                      params={"bill_date": bill_date, "account_type": "BASIC", "tar_type": "GZIP"})

    async def download(self, url: str) -> bytes | Unknown | Refused:
        return await self.api.download(url)
