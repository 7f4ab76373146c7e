"""Read-side SQL: the dashboard and the leaderboards, computed from the facts at read time
over half-open UTC intervals the domain gives (Asia/Shanghai periods)."""
from __future__ import annotations

from datetime import datetime

import asyncpg

_SUMS = """coalesce(sum(amount_fen) FILTER (WHERE kind = 'accrued'), 0) AS accrued_fen,
           coalesce(sum(amount_fen) FILTER (WHERE kind = 'settled'), 0) AS settled_fen,
           coalesce(sum(amount_fen) FILTER (WHERE kind = 'reversed_frozen'), 0) AS reversed_frozen_fen,
           coalesce(sum(amount_fen) FILTER (WHERE kind = 'reversed_settled'), 0) AS reversed_settled_fen,
           coalesce(sum(amount_fen) FILTER (WHERE kind = 'withdrawn'), 0) AS withdrawn_fen"""


async def sums(conn: asyncpg.Connection, promoter_id: str, start: datetime | None, end: datetime | None) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""SELECT {_SUMS} FROM earnings WHERE promoter_id = $1
            AND ($2::timestamptz IS NULL OR at >= $2) AND ($3::timestamptz IS NULL OR at < $3)""",
        promoter_id, start, end)


async def by_day(conn: asyncpg.Connection, promoter_id: str, start: datetime, end: datetime, tz: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT (at AT TIME ZONE $4)::date AS day, {_SUMS} FROM earnings
            WHERE promoter_id = $1 AND at >= $2 AND at < $3 GROUP BY 1 ORDER BY 1""", promoter_id, start, end, tz)


async def top_products(conn: asyncpg.Connection, promoter_id: str, limit: int) -> list[asyncpg.Record]:
    """Products by commission accrued net of reversals (lines whose product is not known yet: 'unknown')."""
    return await conn.fetch(
        """SELECT coalesce(ol.product_id, 'unknown') AS product_id,
                  count(DISTINCT e.order_id) FILTER (WHERE e.kind = 'accrued') AS orders,
                  sum(CASE e.kind WHEN 'accrued' THEN e.amount_fen ELSE -e.amount_fen END) AS earned_fen
           FROM earnings e
           LEFT JOIN (SELECT DISTINCT ON (order_id, line_id) order_id, line_id, product_id FROM order_lines) ol
             ON ol.order_id = e.order_id AND ol.line_id = e.line_id
           WHERE e.promoter_id = $1 AND e.kind IN ('accrued', 'reversed_frozen', 'reversed_settled') AND e.line_id IS NOT NULL
           GROUP BY 1 ORDER BY earned_fen DESC, product_id LIMIT $2""", promoter_id, limit)


async def funnel(conn: asyncpg.Connection, promoter_id: str) -> list[asyncpg.Record]:
    """Per (source, product): shares, visits (distinct visitors), binds, and paid orders of the
    customers bound through it (their level-1 accruals' distinct orders)."""
    return await conn.fetch(
        """WITH steps AS (
               SELECT source, coalesce(product_id, '') AS product,
                      count(*) FILTER (WHERE step = 'share') AS shares,
                      count(DISTINCT customer_id) FILTER (WHERE step = 'visit') AS visits,
                      count(DISTINCT customer_id) FILTER (WHERE step = 'bind') AS binds
               FROM channel_steps WHERE promoter_id = $1 GROUP BY 1, 2),
           bound AS (
               SELECT DISTINCT ON (customer_id) customer_id, source, coalesce(product_id, '') AS product
               FROM channel_steps WHERE promoter_id = $1 AND step = 'bind' ORDER BY customer_id, at DESC),
           paid AS (
               SELECT b.source, b.product, count(DISTINCT e.order_id) AS paid_orders
               FROM earnings e JOIN bound b ON b.customer_id = e.buyer_id
               WHERE e.promoter_id = $1 AND e.kind = 'accrued' AND e.level = 'level1' GROUP BY 1, 2)
           SELECT coalesce(s.source, p.source) AS source, coalesce(s.product, p.product) AS product,
                  coalesce(s.shares, 0) AS shares, coalesce(s.visits, 0) AS visits, coalesce(s.binds, 0) AS binds,
                  coalesce(p.paid_orders, 0) AS paid_orders
           FROM steps s FULL JOIN paid p ON p.source = s.source AND p.product = s.product
           ORDER BY 1, 2""", promoter_id)


_SCORES = {
    # settled commission in the period, net of reversals of settled money in it
    "settled": """SELECT promoter_id, sum(CASE kind WHEN 'settled' THEN amount_fen ELSE -amount_fen END) AS score
                  FROM earnings WHERE kind IN ('settled', 'reversed_settled') AND at >= $1 AND at < $2
                  GROUP BY promoter_id""",
    # customers whose first paid order through the promoter falls in the period
    "new_customers": """SELECT promoter_id, count(*) AS score FROM first_purchases WHERE at >= $1 AND at < $2
                        GROUP BY promoter_id""",
}


async def board(conn: asyncpg.Connection, metric: str, start: datetime, end: datetime, top: int,
                me: str | None) -> list[asyncpg.Record]:
    """The top `top` by `metric` in [start, end) (ties share a rank), plus `me`'s row wherever it is."""
    return await conn.fetch(
        f"""WITH scores AS ({_SCORES[metric]}),
                ranked AS (SELECT promoter_id, score, rank() OVER (ORDER BY score DESC) AS rank
                           FROM scores WHERE score > 0)
            SELECT r.promoter_id, r.score, r.rank, p.nickname FROM ranked r
            LEFT JOIN promoters p USING (promoter_id)
            WHERE r.rank <= $3 OR r.promoter_id = $4 ORDER BY r.rank, r.promoter_id""", start, end, top, me)


async def participants(conn: asyncpg.Connection, metric: str, start: datetime, end: datetime) -> int:
    return await conn.fetchval(f"SELECT count(*) FROM ({_SCORES[metric]}) s WHERE score > 0", start, end)
