"""Products for posters, cached mini-program codes and rendered posters."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Product:
    product_id: str
    title: str
    price_fen: int
    image: bytes | None
    image_url: str | None
    updated_at: datetime


async def save_product(conn: asyncpg.Connection, p: Product) -> None:
    await conn.execute(
        """INSERT INTO products (product_id, title, price_fen, image, image_url, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (product_id) DO UPDATE SET title = EXCLUDED.title, price_fen = EXCLUDED.price_fen,
               image = EXCLUDED.image, image_url = EXCLUDED.image_url, updated_at = EXCLUDED.updated_at""",
        p.product_id, p.title, p.price_fen, p.image, p.image_url, p.updated_at,
    )


async def product(conn: asyncpg.Connection, product_id: str) -> Product | None:
    row = await conn.fetchrow(
        "SELECT product_id, title, price_fen, image, image_url, updated_at FROM products WHERE product_id = $1", product_id)
    return Product(**dict(row)) if row else None


async def code_image(conn: asyncpg.Connection, promoter_id: str, page: str, width: int, scene: str) -> bytes | None:
    return await conn.fetchval(
        "SELECT png FROM wxa_codes WHERE promoter_id = $1 AND page = $2 AND width = $3 AND scene = $4",
        promoter_id, page, width, scene)


async def save_code_image(conn: asyncpg.Connection, promoter_id: str, page: str, width: int, scene: str, png: bytes,
                          now: datetime) -> None:
    await conn.execute(
        """INSERT INTO wxa_codes (promoter_id, page, width, scene, png, created_at) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (promoter_id, page, width) DO UPDATE SET scene = EXCLUDED.scene, png = EXCLUDED.png,
               created_at = EXCLUDED.created_at""",
        promoter_id, page, width, scene, png, now)


async def poster(conn: asyncpg.Connection, input_hash: str) -> bytes | None:
    return await conn.fetchval("SELECT png FROM posters WHERE input_hash = $1", input_hash)


async def save_poster(conn: asyncpg.Connection, input_hash: str, promoter_id: str, product_ref: str, png: bytes,
                      now: datetime) -> None:
    """Keep one poster per promoter and product: a new rendering replaces the stale one."""
    await conn.execute("DELETE FROM posters WHERE promoter_id = $1 AND product_ref = $2 AND input_hash <> $3",
                       promoter_id, product_ref, input_hash)
    await conn.execute(
        """INSERT INTO posters (input_hash, promoter_id, product_ref, png, created_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (input_hash) DO NOTHING""",
        input_hash, promoter_id, product_ref, png, now)
