"""Per-person keys for the personal fields of referral's events (crypto-shredding; shared.shredding).
The master key comes from the setting `REFERRAL_PERSONAL_DATA_KEY` (base64, 32 bytes, from the secret
store; required: `ReferralSettings.personal_data_master_key`, checked before the service serves) and is
passed in by the caller."""
from __future__ import annotations

import asyncpg

from shared import shredding
from shared.db import rows_affected


async def key_for(conn: asyncpg.Connection, master: bytes, person_id: str, *, create: bool) -> bytes | None:
    """The person's data key (made on first use when `create`); None when there is none or it was shredded."""
    wrapped = await conn.fetchval("SELECT wrapped_key FROM person_keys WHERE person_id = $1", person_id)
    if wrapped is None and create:
        await conn.execute("INSERT INTO person_keys (person_id, wrapped_key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                           person_id, shredding.wrap_key(master, person_id, shredding.new_data_key()))
        wrapped = await conn.fetchval("SELECT wrapped_key FROM person_keys WHERE person_id = $1", person_id)
    return None if wrapped is None else shredding.unwrap_key(master, person_id, wrapped)


async def seal(conn: asyncpg.Connection, master: bytes, person_id: str, field: str, text: str | None) -> str | None:
    """`text` sealed with the person's key for an event (None stays None)."""
    if text is None:
        return None
    key = await key_for(conn, master, person_id, create=True)
    assert key is not None
    return shredding.seal_text(key, person_id, field, text)


async def open_sealed(conn: asyncpg.Connection, master: bytes, person_id: str, field: str, sealed: str | None) -> str | None:
    """The clear text of a sealed field, or None when there is none or the person's key was shredded."""
    if sealed is None:
        return None
    key = await key_for(conn, master, person_id, create=False)
    return None if key is None else shredding.open_text(key, person_id, field, sealed)


async def shred(conn: asyncpg.Connection, person_id: str) -> int:
    """Delete the person's key: every sealed copy of their fields becomes unreadable. Returns 1 or 0."""
    return rows_affected(await conn.execute("DELETE FROM person_keys WHERE person_id = $1", person_id))
