"""Drawing a poster with Pillow: product image, title, price, the promoter's avatar and
nickname, and the code whose scene is the promoter code. Bytes in, PNG bytes out.

Posters show the product, never earnings (WeChat bans income promises and rewards for sharing)."""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import segno
from PIL import Image, ImageDraw, ImageFont, ImageOps

from shared.display import format_fen

FONT_PATH = Path(__file__).resolve().parents[1] / "assets" / "wqy-microhei-gb2312.ttf"
LAYOUT_VERSION = "poster-v1"  # part of the cache key: a new layout re-renders every poster

WIDTH = 750
IMAGE_H = 750
FOOTER_H = 420
MARGIN = 30
CODE_SIZE = 240
PRICE_RED = (230, 40, 40)
TEXT = (34, 34, 34)
MUTED = (130, 130, 130)


@lru_cache(maxsize=16)
def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_PATH), size)


@dataclass(frozen=True)
class PosterInput:
    product_image: bytes
    title: str
    price_fen: int
    nickname: str
    avatar: bytes | None
    code_png: bytes
    caption: str


def qr_png(data: str, scale: int = 8) -> bytes:
    """A standard QR code (segno) as PNG, with its quiet zone."""
    buf = io.BytesIO()
    segno.make(data, error="m", micro=False).save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt: ImageFont.FreeTypeFont, width: int, max_lines: int) -> list[str]:
    lines: list[str] = []
    line = ""
    for ch in text:
        if ch == "\n":
            lines.append(line)
            line = ""
            continue
        if draw.textlength(line + ch, font=fnt) <= width:
            line += ch
        else:
            lines.append(line)
            line = ch
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and draw.textlength(last + "…", font=fnt) > width:
            last = last[:-1]
        lines = lines[: max_lines - 1] + [last + "…"]
    return lines


def _avatar(data: bytes | None, nickname: str, size: int) -> Image.Image:
    if data is not None:
        try:
            img = ImageOps.fit(Image.open(io.BytesIO(data)).convert("RGB"), (size, size))
        except Exception:  # a broken avatar never breaks the poster
            img = None
    else:
        img = None
    if img is None:
        img = Image.new("RGB", (size, size), (255, 196, 0))
        d = ImageDraw.Draw(img)
        initial = (nickname.strip() or "?")[0]
        f = font(size // 2)
        d.text((size / 2, size / 2), initial, font=f, fill=(255, 255, 255), anchor="mm")
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse((0, 0, size - 1, size - 1), fill=255)
    out = Image.new("RGBA", (size, size))
    out.paste(img, (0, 0), mask)
    return out


def _code(data: bytes, size: int) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img = img.convert("RGBA")
    # nearest keeps the modules crisp, so the code still scans after scaling
    img = img.resize((size, size), Image.Resampling.NEAREST)
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, img)  # a transparent (is_hyaline) code lands on white


def render(p: PosterInput) -> bytes:
    canvas = Image.new("RGB", (WIDTH, IMAGE_H + FOOTER_H), (255, 255, 255))
    product = ImageOps.fit(Image.open(io.BytesIO(p.product_image)).convert("RGB"), (WIDTH, IMAGE_H))
    canvas.paste(product, (0, 0))
    draw = ImageDraw.Draw(canvas)

    y = IMAGE_H + 24
    title_font = font(34)
    for line in _wrap(draw, p.title, title_font, WIDTH - 2 * MARGIN, 2):
        draw.text((MARGIN, y), line, font=title_font, fill=TEXT)
        y += 46
    draw.text((MARGIN, y + 6), format_fen(p.price_fen), font=font(52), fill=PRICE_RED)

    code_x, code_y = WIDTH - MARGIN - CODE_SIZE, IMAGE_H + FOOTER_H - MARGIN - CODE_SIZE - 30
    canvas.paste(_code(p.code_png, CODE_SIZE).convert("RGB"), (code_x, code_y))
    draw.text((code_x + CODE_SIZE / 2, code_y + CODE_SIZE + 16), p.caption, font=font(22), fill=MUTED, anchor="mm")

    av_size = 88
    av_y = IMAGE_H + FOOTER_H - MARGIN - av_size - 40
    canvas.paste(_avatar(p.avatar, p.nickname, av_size), (MARGIN, av_y), _avatar(p.avatar, p.nickname, av_size))
    name_font = font(28)
    name = _wrap(draw, p.nickname, name_font, code_x - MARGIN * 2 - av_size - 16, 1)
    draw.text((MARGIN + av_size + 16, av_y + 10), name[0] if name else "", font=name_font, fill=TEXT)
    draw.text((MARGIN + av_size + 16, av_y + 52), "为你推荐", font=font(24), fill=MUTED)

    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
