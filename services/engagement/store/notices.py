"""SQL of notices, subscriptions, templates and subscribe-message sends. Functions take a
connection and never commit."""
from __future__ import annotations

import json
import uuid
from typing import Sequence

import asyncpg

from services.engagement.domain.notices import Notice
from shared.db import rows_affected

NOTIFY_CHANNEL_SUFFIX = ".notices"


async def add_notices(conn: asyncpg.Connection, told: Sequence[tuple[uuid.UUID, Notice]]) -> list[int | None]:
    """Store a batch's notices, in one statement, and wake every replica's streams at commit.
    Each promoter's new notices take the next numbers of the promoter's counter in the order
    given, under the promoter row's lock (rows locked in promoter order), so one promoter's ids
    commit in increasing order. Per notice, in the order given: its id, or None when its event
    was noticed before (earlier, or earlier in this batch). A concurrent insert of the same event
    by another replica leaves the number this one drew unused: a gap, never a reorder."""
    if not told:
        return []
    rows = await conn.fetch(
        f"""WITH n AS (
                SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                                     $7::text[], $8::text[], $9::timestamptz[])
                WITH ORDINALITY AS n(promoter_id, source_event_id, kind, title, body, amount_fen, status, ref,
                                     occurred_at, i)),
            fresh AS (
                SELECT DISTINCT ON (source_event_id) * FROM n
                WHERE NOT EXISTS (SELECT 1 FROM notices x WHERE x.source_event_id = n.source_event_id)
                ORDER BY source_event_id, i),
            ranked AS (
                SELECT fresh.*, row_number() OVER (PARTITION BY promoter_id ORDER BY i) AS k,
                       count(*) OVER (PARTITION BY promoter_id) AS c
                FROM fresh),
            seq AS (
                INSERT INTO promoters AS p (promoter_id, notice_seq)
                SELECT promoter_id, max(c) FROM ranked GROUP BY promoter_id ORDER BY promoter_id
                ON CONFLICT (promoter_id) DO UPDATE SET notice_seq = p.notice_seq + EXCLUDED.notice_seq
                RETURNING p.promoter_id, p.notice_seq),
            ins AS (
                INSERT INTO notices (promoter_id, notice_id, source_event_id, kind, title, body, amount_fen, status, ref,
                                     occurred_at)
                SELECT r.promoter_id, s.notice_seq - r.c + r.k, r.source_event_id, r.kind, r.title, r.body,
                       r.amount_fen, r.status, r.ref, r.occurred_at
                FROM ranked r JOIN seq s ON s.promoter_id = r.promoter_id
                ORDER BY r.i
                ON CONFLICT (source_event_id) DO NOTHING RETURNING source_event_id, notice_id, promoter_id)
            -- delivered at commit to every session LISTENing on this schema's channel (one per payload)
            SELECT source_event_id, notice_id FROM ins, pg_notify(current_schema() || '{NOTIFY_CHANNEL_SUFFIX}', ins.promoter_id)""",
        [n.promoter_id for _, n in told], [e for e, _ in told], [n.kind for _, n in told], [n.title for _, n in told],
        [n.body for _, n in told], [n.amount_fen for _, n in told], [n.status for _, n in told],
        [n.ref for _, n in told], [n.at for _, n in told])
    ids = {r["source_event_id"]: r["notice_id"] for r in rows}
    out: list[int | None] = []
    for e, _ in told:
        out.append(ids.pop(e, None))  # a repeat later in the batch gets None
    return out


async def notices_after(conn: asyncpg.Connection, promoter_id: str, after: int, limit: int = 100) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT notice_id, kind, title, body, amount_fen, status, ref, occurred_at, read_at FROM notices
           WHERE promoter_id = $1 AND notice_id > $2 ORDER BY notice_id LIMIT $3""", promoter_id, after, limit)


async def latest_notices(conn: asyncpg.Connection, promoter_id: str, limit: int, before: int | None) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT notice_id, kind, title, body, amount_fen, status, ref, occurred_at, read_at FROM notices
           WHERE promoter_id = $1 AND ($2::bigint IS NULL OR notice_id < $2) ORDER BY notice_id DESC LIMIT $3""",
        promoter_id, before, limit)


async def last_notice_id(conn: asyncpg.Connection, promoter_id: str) -> int:
    return await conn.fetchval("SELECT coalesce(max(notice_id), 0) FROM notices WHERE promoter_id = $1", promoter_id)


async def mark_read(conn: asyncpg.Connection, promoter_id: str, up_to: int) -> int:
    status = await conn.execute(
        "UPDATE notices SET read_at = now() WHERE promoter_id = $1 AND notice_id <= $2 AND read_at IS NULL",
        promoter_id, up_to)
    return rows_affected(status)


# -- subscriptions ---------------------------------------------------------------------------
async def report_subscriptions(conn: asyncpg.Connection, promoter_id: str, openid: str, template_ids: list[str],
                               key: str) -> bool:
    """Count one more accepted one-time subscription per template id; False (nothing counted)
    when this report was counted before (same idempotency key)."""
    first = await conn.fetchval(
        """INSERT INTO subscription_reports (promoter_id, idempotency_key, template_ids) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING RETURNING 1""", promoter_id, key, template_ids)
    if not first:
        return False
    for tid in sorted(template_ids):
        await conn.execute(
            """INSERT INTO subscriptions (promoter_id, template_id, openid, accepted) VALUES ($1, $2, $3, 1)
               ON CONFLICT (promoter_id, template_id) DO UPDATE SET accepted = subscriptions.accepted + 1,
                   openid = EXCLUDED.openid, updated_at = now()""", promoter_id, tid, openid)
    return True


async def subscriptions(conn: asyncpg.Connection, promoter_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT template_id, accepted, used, accepted - used AS remaining FROM subscriptions WHERE promoter_id = $1 "
        "ORDER BY template_id", promoter_id)


async def with_subscriptions_left(conn: asyncpg.Connection, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (promoter, template) pairs have an unused subscription now (one statement): most
    promoters have none, and asking each notice's pair alone was a statement per notice."""
    if not pairs:
        return set()
    rows = await conn.fetch(
        """SELECT s.promoter_id, s.template_id FROM subscriptions s
           JOIN unnest($1::text[], $2::text[]) AS k(p, t) ON s.promoter_id = k.p AND s.template_id = k.t
           WHERE s.used < s.accepted""", [p for p, _ in pairs], [t for _, t in pairs])
    return {(r["promoter_id"], r["template_id"]) for r in rows}


async def use_subscription(conn: asyncpg.Connection, promoter_id: str, template_id: str) -> str | None:
    """Use one unused subscription (the condition is in the UPDATE); its openid, or None."""
    return await conn.fetchval(
        """UPDATE subscriptions SET used = used + 1, updated_at = now()
           WHERE promoter_id = $1 AND template_id = $2 AND used < accepted RETURNING openid""", promoter_id, template_id)


async def give_back(conn: asyncpg.Connection, promoter_id: str, template_id: str) -> None:
    """WeChat did not use the subscription (a bad parameter): it stays available."""
    await conn.execute("UPDATE subscriptions SET used = used - 1 WHERE promoter_id = $1 AND template_id = $2 AND used > 0",
                       promoter_id, template_id)


async def exhaust(conn: asyncpg.Connection, promoter_id: str, template_id: str) -> None:
    """WeChat says none is left (43101): believe it."""
    await conn.execute("UPDATE subscriptions SET used = accepted WHERE promoter_id = $1 AND template_id = $2",
                       promoter_id, template_id)


# -- templates -------------------------------------------------------------------------------
async def put_template(conn: asyncpg.Connection, kind: str, template_id: str, page: str, fields: dict[str, str],
                       enabled: bool, by: str) -> None:
    await conn.execute(
        """INSERT INTO notice_templates (kind, template_id, page, fields, enabled, updated_by) VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (kind) DO UPDATE SET template_id = EXCLUDED.template_id, page = EXCLUDED.page,
               fields = EXCLUDED.fields, enabled = EXCLUDED.enabled, updated_by = EXCLUDED.updated_by, updated_at = now()""",
        kind, template_id, page, json.dumps(fields), enabled, by)


async def templates(conn: asyncpg.Connection) -> dict[str, asyncpg.Record]:
    rows = await conn.fetch("SELECT kind, template_id, page, fields, enabled, updated_by, updated_at FROM notice_templates")
    return {r["kind"]: r for r in rows}


def fields_of(row: asyncpg.Record) -> dict[str, str]:
    f = row["fields"]
    return json.loads(f) if isinstance(f, str) else dict(f)


# -- sends -----------------------------------------------------------------------------------
async def add_send(conn: asyncpg.Connection, source_event_id: uuid.UUID, promoter_id: str, notice_id: int,
                   template_id: str, openid: str, page: str, data: dict) -> None:
    await conn.execute(
        """INSERT INTO subscribe_sends (source_event_id, promoter_id, notice_id, template_id, openid, page, data, state)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') ON CONFLICT DO NOTHING""",
        source_event_id, promoter_id, notice_id, template_id, openid, page, json.dumps(data, ensure_ascii=False))


async def take_pending(conn: asyncpg.Connection, limit: int = 20) -> list[asyncpg.Record]:
    """Mark up to `limit` pending sends `sending` (any replica; skip-locked) and return them."""
    return await conn.fetch(
        """UPDATE subscribe_sends SET state = 'sending', updated_at = now() WHERE source_event_id IN (
               SELECT source_event_id FROM subscribe_sends WHERE state = 'pending' ORDER BY created_at
               LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING source_event_id, promoter_id, notice_id, template_id, openid, page, data""", limit)


async def finish_send(conn: asyncpg.Connection, source_event_id: uuid.UUID, state: str, errcode: int | None) -> None:
    await conn.execute("UPDATE subscribe_sends SET state = $2, errcode = $3, updated_at = now() WHERE source_event_id = $1",
                       source_event_id, state, errcode)


async def abandon_stale(conn: asyncpg.Connection, older_than_s: float) -> list[asyncpg.Record]:
    """Sends left `sending` by a replica that stopped: their outcome is unknown, and they are
    not tried again (a subscribe message has no idempotency key: a retry could show it twice)."""
    return await conn.fetch(
        """UPDATE subscribe_sends SET state = 'unknown', updated_at = now()
           WHERE state = 'sending' AND updated_at < now() - make_interval(secs => $1)
           RETURNING source_event_id, promoter_id, notice_id, template_id""", older_than_s)


async def sends_for(conn: asyncpg.Connection, promoter_id: str) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM subscribe_sends WHERE promoter_id = $1 ORDER BY notice_id", promoter_id)
