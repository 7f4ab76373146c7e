"""Fetching product images and avatars, only from hosts the merchant allows (no open proxy
into the internal network), size-capped, and checked to be an image."""
from __future__ import annotations

import io
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from services.referral.domain.errors import ImageRefusedError

#: the most pixels an image may have (a 4096 x 4096 product photo); checked from the header,
#: before anything is decoded: a 20000 x 20000 PNG is a few hundred KB and GBs decoded
MAX_IMAGE_PIXELS = 4096 * 4096
# Pillow's own guard too (it raises DecompressionBombError at twice this): no path decodes more
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def check_image(data: bytes, max_bytes: int) -> bytes:
    if len(data) > max_bytes:
        raise ImageRefusedError(f"image larger than {max_bytes} bytes")
    try:
        with Image.open(io.BytesIO(data)) as im:   # reads the header only
            width, height = im.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageRefusedError(f"image of {width}x{height} pixels: at most {MAX_IMAGE_PIXELS} pixels")
            im.verify()
    except ImageRefusedError:
        raise
    except Image.DecompressionBombError as exc:   # Pillow's own guard, from the header too
        raise ImageRefusedError(f"image has too many pixels: at most {MAX_IMAGE_PIXELS} pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRefusedError("not a readable image") from exc
    return data


class ImageFetcher:
    def __init__(self, http: httpx.AsyncClient, allowed_hosts: frozenset[str], max_bytes: int) -> None:
        self.http, self.allowed_hosts, self.max_bytes = http, allowed_hosts, max_bytes

    def allowed(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return False
            host, port = parts.hostname.lower(), parts.port
        except ValueError:  # a malformed URL (bad port, brackets): not from an allowed host
            return False
        return host in self.allowed_hosts or (port is not None and f"{host}:{port}" in self.allowed_hosts)

    async def fetch(self, url: str) -> bytes:
        if not self.allowed(url):
            raise ImageRefusedError("images may only be fetched from the merchant's allowed hosts")
        try:
            async with self.http.stream("GET", url, follow_redirects=False) as resp:
                if resp.status_code != 200:
                    raise ImageRefusedError(f"image fetch answered {resp.status_code}")
                chunks, size = [], 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ImageRefusedError(f"image larger than {self.max_bytes} bytes")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise ImageRefusedError(f"image fetch failed: {type(exc).__name__}") from exc
        return check_image(b"".join(chunks), self.max_bytes)

    async def fetch_optional(self, url: str | None) -> bytes | None:
        """An avatar: drawn when it can be had, replaced by a placeholder otherwise."""
        if not url or not self.allowed(url):
            return None
        try:
            return await self.fetch(url)
        except ImageRefusedError:
            return None
