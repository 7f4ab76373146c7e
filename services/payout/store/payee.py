"""SQL for payee identities, per-person keys, erasures and the payments tax is computed on."""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

import asyncpg

from services.payout.domain import payee as rules
from shared.db import rows_affected
from shared.erasure import record_erasure


async def person_key(conn: asyncpg.Connection, master: bytes, person_id: str, *, create: bool) -> bytes | None:
    """The person's data key (made on first use when `create`); None when there is none (or it was shredded)."""
    row = await conn.fetchval("SELECT wrapped_key FROM person_keys WHERE person_id = $1", person_id)
    if row is not None:
        return rules.unwrap_key(master, person_id, row)
    if not create:
        return None
    key = rules.new_data_key()
    await conn.execute("INSERT INTO person_keys (person_id, wrapped_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                       person_id, rules.wrap_key(master, person_id, key))
    row = await conn.fetchval("SELECT wrapped_key FROM person_keys WHERE person_id = $1", person_id)
    return rules.unwrap_key(master, person_id, row)


async def erased(conn: asyncpg.Connection, person_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM personal_data_erasures WHERE person_id = $1", person_id))


async def save_identity(conn: asyncpg.Connection, master: bytes, person_id: str, real_name: str, id_number: str,
                        consent_at: datetime) -> None:
    key = await person_key(conn, master, person_id, create=True)
    assert key is not None
    await conn.execute(
        """INSERT INTO payee_identities (promoter_id, real_name_ct, id_number_ct, consent_purpose, consent_version, consent_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (promoter_id) DO UPDATE SET real_name_ct = excluded.real_name_ct, id_number_ct = excluded.id_number_ct,
               consent_purpose = excluded.consent_purpose, consent_version = excluded.consent_version,
               consent_at = excluded.consent_at, updated_at = now()""",
        person_id, rules.seal(key, person_id, "real_name", real_name), rules.seal(key, person_id, "id_number", id_number),
        rules.CONSENT_PURPOSE, rules.CONSENT_VERSION, consent_at)


async def load_identities(conn: asyncpg.Connection, master: bytes, person_ids: list[str]) -> dict[str, dict[str, Any]]:
    """person id -> {real_name, id_number, consent_at} (None values when the key was shredded)."""
    rows = await conn.fetch("""SELECT i.*, k.wrapped_key FROM payee_identities i LEFT JOIN person_keys k ON k.person_id = i.promoter_id
                               WHERE i.promoter_id = ANY($1::text[])""", person_ids)
    out = {}
    for r in rows:
        pid = r["promoter_id"]
        if r["wrapped_key"] is None:
            out[pid] = {"real_name": None, "id_number": None, "consent_at": r["consent_at"], "consent_version": r["consent_version"]}
            continue
        key = rules.unwrap_key(master, pid, r["wrapped_key"])
        out[pid] = {"real_name": rules.open_sealed(key, pid, "real_name", r["real_name_ct"]),
                    "id_number": rules.open_sealed(key, pid, "id_number", r["id_number_ct"]),
                    "consent_at": r["consent_at"], "consent_version": r["consent_version"]}
    return out


async def paid_in(conn: asyncpg.Connection, start: date, end: date) -> list[asyncpg.Record]:
    """Paid withdrawals (labour remuneration paid) of business days [start, end), with the tax withheld on each."""
    return await conn.fetch(
        """SELECT withdrawal_id, promoter_id, amount_fen, tax_withheld_fen, business_day FROM withdrawals
           WHERE status = 'paid' AND business_day >= $1 AND business_day < $2
           ORDER BY promoter_id, business_day, requested_at""", start, end)


async def erase(conn: asyncpg.Connection, person_id: str, by: str, reason: str, at: datetime) -> dict[str, int]:
    """Crypto-shred the person's key and clear the personal fields of their withdrawals; amounts,
    ids and times (the money trail) stay. Returns what was done."""
    keys = await conn.execute("DELETE FROM person_keys WHERE person_id = $1", person_id)
    wds = await conn.execute("""UPDATE withdrawals SET openid = 'erased', user_name_cipher = NULL, user_name_serial = NULL
                                WHERE promoter_id = $1 AND (openid <> 'erased' OR user_name_cipher IS NOT NULL)""", person_id)
    await record_erasure(conn, person_id, at, by, reason)
    return {"keys_shredded": rows_affected(keys), "withdrawals_cleared": rows_affected(wds)}
