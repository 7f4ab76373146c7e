"""The poster drawing: a PNG of the expected size whose code decodes back to what it carries."""
from __future__ import annotations

import io

import zxingcpp
from PIL import Image, ImageOps

from services.referral.posters import render


def product() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (300, 500), (10, 150, 90)).save(buf, format="PNG")
    return buf.getvalue()


def test_poster_carries_a_decodable_code_and_chinese_text_renders():
    url = "https://shop.example.com/share?scene=Ab3dE9xYz1"
    png = render.render(render.PosterInput(product_image=product(), title="有机高山红茶 250克礼盒装" * 3, price_fen=1234,
                                           nickname="张三丰", avatar=None, code_png=render.qr_png(url), caption="扫码查看商品"))
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (render.WIDTH, render.IMAGE_H + render.FOOTER_H)
    assert [r.text for r in zxingcpp.read_barcodes(img)] == [url]


def test_the_bundled_font_has_the_glyphs_of_common_chinese():
    f = render.font(30)
    missing = f.getmask("\u0378").getbbox()  # an unassigned code point: the .notdef box
    for ch in "张三丰推荐长按识别小程序码扫码查看商品¥":
        assert f.getmask(ch).getbbox() != missing or ch == "¥", ch


def test_a_transparent_code_is_laid_on_white():
    qr = Image.open(io.BytesIO(render.qr_png("scene=1"))).convert("RGBA")
    qr.putalpha(ImageOps.invert(qr.convert("L")))  # is_hyaline: white is transparent
    buf = io.BytesIO()
    qr.save(buf, format="PNG")
    png = render.render(render.PosterInput(product_image=product(), title="t", price_fen=0, nickname="n", avatar=None,
                                           code_png=buf.getvalue(), caption="c"))
    assert [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))] == ["scene=1"]
