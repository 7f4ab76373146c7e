"""subscribeMessage.send through a real httpx client; the access token is
`shared.wechat.StableToken` (the same handling as referral's poster client)."""
from __future__ import annotations

import httpx

from shared.wechat import StableToken


class SubscribeClient:
    def __init__(self, token: StableToken, http: httpx.AsyncClient, *, api_base: str = "https://api.weixin.qq.com",
                 miniprogram_state: str = "formal", lang: str = "zh_CN") -> None:
        self.token, self.http = token, http
        self.api_base = api_base.rstrip("/")
        self.miniprogram_state, self.lang = miniprogram_state, lang

    async def send(self, *, touser: str, template_id: str, page: str, data: dict) -> int:
        """Send one subscribe message; the errcode WeChat answered (0: sent). Transport errors
        propagate (httpx.ConnectError: the request never left; others: outcome unknown)."""
        body = {"touser": touser, "template_id": template_id, "data": data,
                "miniprogram_state": self.miniprogram_state, "lang": self.lang}
        if page:
            body["page"] = page

        async def call(token: str) -> tuple[int, str]:
            resp = await self.http.post(f"{self.api_base}/cgi-bin/message/subscribe/send",
                                        params={"access_token": token}, json=body)
            try:
                answer = resp.json()
            except ValueError:
                return -1, f"unexpected answer {resp.status_code}"
            return int(answer.get("errcode", -1)), str(answer.get("errmsg", ""))

        errcode, _ = await self.token.call_with_token(call)
        return errcode
