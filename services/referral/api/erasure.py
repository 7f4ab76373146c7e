"""Erasure of a person's personal data held by referral (operator role; docs/tax.md, "Retention and
erasure"): their nickname and avatar address, the posters and mini-program codes drawn for them, and
their data key (crypto-shredding: the nickname and application note sealed in referral's events can
no longer be opened, in the Kafka log or anywhere else).
Ids, bindings, promoter statuses and times stay: they are the chain the commission was paid through,
and the money trail must remain provable."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.referral.api.deps import NowDep, RuntimeDep
from services.referral.store import person_keys
from shared.db import rows_affected
from shared.erasure import ErasureIn, PersonId, record_erasure
from shared.identity import OperatorIdentity

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/persons/{person_id}/erase")
async def erase_person(body: ErasureIn, operator: OperatorIdentity, rt: RuntimeDep, now: NowDep,
                       person_id: PersonId) -> dict[str, Any]:
    async with rt.pool.acquire() as conn, conn.transaction():
        users = await conn.execute("UPDATE users SET nickname = NULL, avatar_url = NULL WHERE user_id = $1", person_id)
        posters = await conn.execute("DELETE FROM posters WHERE promoter_id = $1", person_id)
        codes = await conn.execute("DELETE FROM wxa_codes WHERE promoter_id = $1", person_id)
        keys = await person_keys.shred(conn, person_id)
        await record_erasure(conn, person_id, now, operator.user_id, body.reason)
    return {"person_id": person_id, "users_cleared": rows_affected(users), "posters_deleted": rows_affected(posters),
            "codes_deleted": rows_affected(codes), "keys_shredded": keys}
