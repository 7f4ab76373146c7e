"""Erasure of a person's personal data held by orders (operator role; docs/audit.md, "Retention and
erasure"): the WeChat openid of the payer on their orders (`payer_openid`, sent to WeChat Pay with a
prepay). Order ids, lines, amounts, refunds, WeChat transaction and refund ids, and times stay: they
are the money trail (the order events in the log, the re-deriving audit and the reconciliation with
WeChat's bills still prove it). An order still waiting for payment can be paid only with an identity
carrying an openid again."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from services.orders.api.deps import ClockDep, ConnDep
from shared.identity import OperatorIdentity

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=200)


def _count(status: str) -> int:
    return int(status.split()[-1])


@router.post("/persons/{person_id}/erase")
async def erase_person(body: ErasureIn, operator: OperatorIdentity, conn: ConnDep, clock: ClockDep,
                       person_id: str = Path(min_length=1, max_length=128)) -> dict[str, Any]:
    async with conn.transaction():
        orders = await conn.execute(
            "UPDATE orders SET payer_openid = NULL WHERE buyer_id = $1 AND payer_openid IS NOT NULL", person_id)
        await conn.execute("""INSERT INTO personal_data_erasures (person_id, erased_at, erased_by, reason)
                              VALUES ($1, $2, $3, $4) ON CONFLICT (person_id) DO NOTHING""",
                           person_id, clock(), operator.user_id, body.reason)
    return {"person_id": person_id, "orders_cleared": _count(orders)}
