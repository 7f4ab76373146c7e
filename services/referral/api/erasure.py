"""Erasure of a person's personal data held by referral (operator role; docs/tax.md, "Retention and
erasure"): their nickname and avatar address, the posters and mini-program codes drawn for them, and
their data key (crypto-shredding: the nickname and application note sealed in referral's events can
no longer be opened, in the Kafka log or anywhere else).
Ids, bindings, promoter statuses and times stay: they are the chain the commission was paid through,
and the money trail must remain provable."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from services.referral.api.deps import NowDep, RuntimeDep
from services.referral.store import person_keys
from shared.identity import OperatorIdentity

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=200)


def _count(status: str) -> int:
    return int(status.split()[-1])


@router.post("/persons/{person_id}/erase")
async def erase_person(body: ErasureIn, operator: OperatorIdentity, rt: RuntimeDep, now: NowDep,
                       person_id: str = Path(min_length=1, max_length=128)) -> dict[str, Any]:
    async with rt.pool.acquire() as conn, conn.transaction():
        users = await conn.execute("UPDATE users SET nickname = NULL, avatar_url = NULL WHERE user_id = $1", person_id)
        posters = await conn.execute("DELETE FROM posters WHERE promoter_id = $1", person_id)
        codes = await conn.execute("DELETE FROM wxa_codes WHERE promoter_id = $1", person_id)
        keys = await person_keys.shred(conn, person_id)
        await conn.execute("""INSERT INTO personal_data_erasures (person_id, erased_at, erased_by, reason)
                              VALUES ($1, $2, $3, $4) ON CONFLICT (person_id) DO NOTHING""",
                           person_id, now, operator.user_id, body.reason)
    return {"person_id": person_id, "users_cleared": _count(users), "posters_deleted": _count(posters),
            "codes_deleted": _count(codes), "keys_shredded": keys}
