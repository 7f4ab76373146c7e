"""Erasure of a person's personal data held by engagement (operator role; docs/tax.md, "Retention
and erasure"): the nickname shown (masked) on the boards, and the WeChat openid of their subscribe
messages (the subscriptions are dropped, the sent messages keep their state without the openid).
Notices, earnings facts, honours and ids stay."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from services.engagement.api.deps import ConnDep, utcnow
from shared.identity import OperatorIdentity

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=200)


def _count(status: str) -> int:
    return int(status.split()[-1])


@router.post("/persons/{person_id}/erase")
async def erase_person(body: ErasureIn, operator: OperatorIdentity, conn: ConnDep,
                       person_id: str = Path(min_length=1, max_length=128)) -> dict[str, Any]:
    async with conn.transaction():
        names = await conn.execute("UPDATE promoters SET nickname = NULL WHERE promoter_id = $1 AND nickname IS NOT NULL",
                                   person_id)
        subs = await conn.execute("DELETE FROM subscriptions WHERE promoter_id = $1", person_id)
        sends = await conn.execute("UPDATE subscribe_sends SET openid = 'erased' WHERE promoter_id = $1 AND openid <> 'erased'",
                                   person_id)
        await conn.execute("""INSERT INTO personal_data_erasures (person_id, erased_at, erased_by, reason)
                              VALUES ($1, $2, $3, $4) ON CONFLICT (person_id) DO NOTHING""",
                           person_id, utcnow(), operator.user_id, body.reason)
    return {"person_id": person_id, "nicknames_cleared": _count(names), "subscriptions_deleted": _count(subs),
            "messages_cleared": _count(sends)}
