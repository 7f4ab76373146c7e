"""Edge limits: body size (413, before reading when declared), NUL anywhere (422), bounded
money and counts, image pixel cap from the header."""
import binascii
import struct
import zlib

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from shared.limits import MAX_FEN, Count, EdgeLimits, Fen, Rate, has_nul


class Body(BaseModel):
    name: str = ""
    fen: Fen = 0
    n: Count = 0


def app() -> TestClient:
    a = FastAPI()

    @a.post("/items/{item}")
    async def post(item: str, body: Body):
        return {"item": item, "name": body.name}

    @a.post("/big")
    async def big(body: Body):
        return {"ok": True}

    @a.get("/items/{item}")
    async def get(item: str, q: str = ""):
        return {"item": item, "q": q}

    a.add_middleware(EdgeLimits, default_body_limit=1024, body_limits=[(r"^/big$", 4096)])
    return TestClient(a)


def test_nul_anywhere_is_a_422():
    c = app()
    assert c.get("/items/a%00b").status_code == 422
    assert c.get("/items/ab", params={"q": "x\x00y"}).status_code == 422
    assert c.post("/items/ab", json={"name": "a\u0000b"}).status_code == 422
    assert c.post("/items/ab", content=b'{"name": "a\x00b"}', headers={"content-type": "application/json"}).status_code == 422
    r = c.post("/items/ab", json={"name": "a\\u0000b"})   # a literal backslash-u0000 text is not a NUL
    assert r.status_code == 200 and r.json()["name"] == "a\\u0000b"
    assert c.get("/items/ab", params={"q": "ok"}).json() == {"item": "ab", "q": "ok"}


def test_body_limits_per_route_before_reading():
    c = app()
    assert c.post("/items/a", json={"name": "x" * 2000}).status_code == 413
    assert c.post("/big", json={"name": "x" * 2000}).status_code == 200
    assert c.post("/big", json={"name": "x" * 5000}).status_code == 413

    def chunks():  # no Content-Length: refused while streaming
        for _ in range(10):
            yield b" " * 500
    r = c.post("/items/a", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"


@pytest.mark.parametrize("value", [2**31, 2**63, -(2**63), MAX_FEN + 1, "150", 150.0, True])
def test_money_and_counts_are_strict_bounded_integers(value):
    c = app()
    assert c.post("/items/a", json={"fen": value}).status_code == 422
    assert c.post("/items/a", json={"n": value}).status_code == 422
    assert c.post("/items/a", json={"fen": MAX_FEN, "n": 3}).status_code == 200


def test_has_nul_and_rate_parsing():
    assert has_nul(b"\x00") and has_nul(b'"\\u0000"') and not has_nul(b'"\\\\u0000"')
    assert Rate.parse("30/min,10") == Rate(30, 10) and Rate.parse("2/s") == Rate(120, 120)
    assert Rate.parse("off") is None and Rate.parse("") is None


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", binascii.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_an_image_bomb_is_refused_from_its_header():
    from services.referral.clients.images import MAX_IMAGE_PIXELS, check_image
    from services.referral.domain.errors import ImageRefusedError

    with pytest.raises(ImageRefusedError, match="pixels"):
        check_image(_png_header(20000, 20000), 5_000_000)     # 400 megapixels in ~100 bytes
    with pytest.raises(ImageRefusedError, match="pixels"):
        check_image(_png_header(12000, 12000), 5_000_000)
    assert MAX_IMAGE_PIXELS == 4096 * 4096
