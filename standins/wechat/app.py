"""All WeChat stand-ins behind one local server (the demo's `api.weixin.qq.com` and
`api.mch.weixin.qq.com`): payment/refund notices and queries, merchant transfers, and the
mini-program server API. Keys live in one directory so the services can be configured
from it."""
from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from standins.wechat import miniprogram, pay, transfer


@dataclass
class WeChatStandins:
    pay: pay.WeChatPayStandin
    transfer: transfer.TransferStandin
    transfer_keys: transfer.DevKeys
    miniprogram: miniprogram.MiniProgramState
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def service_env(self) -> dict[str, dict[str, str]]:
        """Environment for each service so that it talks to these stand-ins."""
        return {
            "orders": {**pay_env(self.pay),
                       **self.pay.client_env(self.base_url, "http://127.0.0.1:8102/v1/wechatpay/notify")},
            "payout": {**self.transfer_keys.payout_env(), "PAYOUT_WECHAT_BASE_URL": self.base_url},
            "referral": {"REFERRAL_WECHAT_APPID": self.miniprogram.appid, "REFERRAL_WECHAT_SECRET": self.miniprogram.secret,
                         "REFERRAL_WECHAT_API_BASE": self.base_url, "REFERRAL_WECHAT_CHECK_PATH": "false"},
            "engagement": {"ENGAGEMENT_WECHAT_APPID": self.miniprogram.appid,
                           "ENGAGEMENT_WECHAT_SECRET": self.miniprogram.secret,
                           "ENGAGEMENT_WECHAT_API_BASE": self.base_url},
        }

    def app(self) -> FastAPI:
        app = FastAPI(title="WeChat stand-ins (local only)")
        app.include_router(pay.make_router(self.pay))
        app.include_router(transfer.make_router(self.transfer))
        app.include_router(miniprogram.make_router(self.miniprogram))
        return app


def pay_env(p: pay.WeChatPayStandin) -> dict[str, str]:
    return p.env()


def create(key_dir: Path, port: int = 8199) -> WeChatStandins:
    key_dir.mkdir(parents=True, exist_ok=True)
    pay_file = key_dir / "pay.json"
    if pay_file.exists():
        p = pay.WeChatPayStandin.load(str(pay_file))
    else:
        p = pay.WeChatPayStandin()
    # WeChat's notice retries, compressed from 15 s ... 6 h so a demo sees them through
    p.notify_retry_s = (1, 2, 4, 8, 15, 30, 60)
    if not p.merchant_private_pem:  # the merchant API key orders signs prepay/close/refund calls with
        p.ensure_merchant_key()
        p.save(str(pay_file))
    keys = transfer.dev_keys(key_dir)
    return WeChatStandins(p, transfer.from_dev_keys(keys), keys, miniprogram.MiniProgramState(), port)


async def serve(standins: WeChatStandins) -> tuple[uvicorn.Server, asyncio.Task]:
    """Serve in the current event loop (so the caller can also drive the stand-ins' Python controls)."""
    with socket.socket() as s:  # fail early and clearly when the port is taken
        if s.connect_ex(("127.0.0.1", standins.port)) == 0:
            raise RuntimeError(f"port {standins.port} is in use: is another demo running?")
    server = uvicorn.Server(uvicorn.Config(standins.app(), host="127.0.0.1", port=standins.port, log_level="warning",
                                           access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
        if task.done():
            task.result()
    return server, task
