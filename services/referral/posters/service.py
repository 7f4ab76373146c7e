"""Making a promoter's poster: the code (WeChat mini-program code when credentials are set,
otherwise a QR of the share URL), cached per promoter and page; the poster itself cached by a
hash of everything drawn on it, so it is rendered again exactly when an input changes."""
from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

import asyncpg

from services.referral.clients.images import ImageFetcher
from services.referral.clients.wechat import WxaClient
from services.referral.posters import render
from services.referral.store import posters as posters_store


@dataclass(frozen=True)
class CodeSource:
    wxa: WxaClient | None
    page: str
    width: int
    check_path: bool
    env_version: str
    share_url_base: str

    @property
    def caption(self) -> str:
        return "长按识别小程序码" if self.wxa else "扫码查看商品"

    def share_url(self, code: str) -> str:
        sep = "&" if "?" in self.share_url_base else "?"
        return f"{self.share_url_base}{sep}{urlencode({'scene': code})}"

    async def code_png(self, pool: asyncpg.Pool, promoter_id: str, promoter_code: str, now: datetime) -> bytes:
        if self.wxa is None:
            return await asyncio.to_thread(render.qr_png, self.share_url(promoter_code))
        page = self.page.lstrip("/")
        async with pool.acquire() as conn:
            cached = await posters_store.code_image(conn, promoter_id, page, self.width, promoter_code)
        if cached is not None:
            return cached
        # no connection is held while WeChat answers
        png = await self.wxa.code_unlimited(promoter_code, page=page, width=self.width, check_path=self.check_path,
                                            env_version=self.env_version)
        async with pool.acquire() as conn:
            await posters_store.save_code_image(conn, promoter_id, page, self.width, promoter_code, png, now)
        return png


@dataclass(frozen=True)
class PosterRequest:
    promoter_id: str
    promoter_code: str
    nickname: str
    avatar_url: str | None
    product_ref: str
    title: str
    price_fen: int
    product_image: bytes


def input_hash(req: PosterRequest, code_png: bytes, caption: str) -> str:
    h = hashlib.sha256()
    for part in (render.LAYOUT_VERSION, req.promoter_id, req.promoter_code, req.nickname, req.avatar_url or "",
                 req.title, str(req.price_fen), caption):
        h.update(part.encode())
        h.update(b"\x00")
    h.update(hashlib.sha256(req.product_image).digest())
    h.update(hashlib.sha256(code_png).digest())
    return h.hexdigest()


async def poster(pool: asyncpg.Pool, codes: CodeSource, images: ImageFetcher, req: PosterRequest,
                 now: datetime) -> tuple[bytes, bool]:
    """(PNG, whether it came from the cache)."""
    code_png = await codes.code_png(pool, req.promoter_id, req.promoter_code, now)
    key = input_hash(req, code_png, codes.caption)
    async with pool.acquire() as conn:
        cached = await posters_store.poster(conn, key)
    if cached is not None:
        return cached, True
    avatar = await images.fetch_optional(req.avatar_url)
    png = await asyncio.to_thread(render.render, render.PosterInput(
        product_image=req.product_image, title=req.title, price_fen=req.price_fen, nickname=req.nickname,
        avatar=avatar, code_png=code_png, caption=codes.caption))
    async with pool.acquire() as conn, conn.transaction():
        await posters_store.save_poster(conn, key, req.promoter_id, req.product_ref, png, now)
    return png, False
