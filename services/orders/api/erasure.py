"""Erasure of a person's personal data held by orders (operator role; docs/audit.md, "Retention and
erasure"): the WeChat openid of the payer on their orders (`payer_openid`, sent to WeChat Pay with a
prepay). Order ids, lines, amounts, refunds, WeChat transaction and refund ids, and times stay: they
are the money trail (the order events in the log, the re-deriving audit and the reconciliation with
WeChat's bills still prove it). An order still waiting for payment can be paid only with an identity
carrying an openid again."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.orders.api.deps import ClockDep, ConnDep
from shared.db import rows_affected
from shared.erasure import ErasureIn, PersonId, record_erasure
from shared.identity import OperatorIdentity

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/persons/{person_id}/erase")
async def erase_person(body: ErasureIn, operator: OperatorIdentity, conn: ConnDep, clock: ClockDep,
                       person_id: PersonId) -> dict[str, Any]:
    async with conn.transaction():
        orders = await conn.execute(
            "UPDATE orders SET payer_openid = NULL WHERE buyer_id = $1 AND payer_openid IS NOT NULL", person_id)
        await record_erasure(conn, person_id, clock(), operator.user_id, body.reason)
    return {"person_id": person_id, "orders_cleared": rows_affected(orders)}
