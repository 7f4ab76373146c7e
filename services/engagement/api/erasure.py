"""Erasure of a person's personal data held by engagement (operator role; docs/tax.md, "Retention
and erasure"): the nickname shown (masked) on the boards, and the WeChat openid of their subscribe
messages (the subscriptions are dropped, the sent messages keep their state without the openid).
Notices, earnings facts, honours and ids stay."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.engagement.api.deps import ConnDep, utcnow
from shared.db import rows_affected
from shared.erasure import ErasureIn, PersonId, record_erasure
from shared.identity import OperatorIdentity

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/persons/{person_id}/erase")
async def erase_person(body: ErasureIn, operator: OperatorIdentity, conn: ConnDep,
                       person_id: PersonId) -> dict[str, Any]:
    async with conn.transaction():
        names = await conn.execute("UPDATE promoters SET nickname = NULL WHERE promoter_id = $1 AND nickname IS NOT NULL",
                                   person_id)
        subs = await conn.execute("DELETE FROM subscriptions WHERE promoter_id = $1", person_id)
        sends = await conn.execute("UPDATE subscribe_sends SET openid = 'erased' WHERE promoter_id = $1 AND openid <> 'erased'",
                                   person_id)
        await record_erasure(conn, person_id, utcnow(), operator.user_id, body.reason)
    return {"person_id": person_id, "nicknames_cleared": rows_affected(names), "subscriptions_deleted": rows_affected(subs),
            "messages_cleared": rows_affected(sends)}
