"""A promoter's attributed orders: orders whose promoter_code belongs to them (codes learnt
from referral's PromoterEnrolled), buyer masked."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from services.orders.api.deps import ConnDep
from services.orders.api.schemas import PromoterOrder, PromoterOrderLine, PromoterOrderList, order_public
from services.orders.domain.rules import mask_buyer
from services.orders.store import orders as store
from shared.identity import CurrentIdentity

router = APIRouter(prefix="/v1/promoters", tags=["promoters"])


@router.get("/me/orders", response_model=PromoterOrderList)
async def my_orders(who: CurrentIdentity, conn: ConnDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                    before: datetime | None = None) -> PromoterOrderList:
    """The identity's user is the promoter (promoter_id == user_id); not a promoter: no orders."""
    codes = await store.codes_of(conn, who.user_id)
    rows = await store.list_by_codes(conn, codes, limit=limit, before=before) if codes else []
    ids = [r["order_id"] for r in rows]
    lines, refunds = await store.get_lines_of(conn, ids), await store.refund_line_rows(conn, ids)
    orders = []
    for r in rows:
        full = order_public(r, lines.get(r["order_id"], []), refunds.get(r["order_id"], []))
        orders.append(PromoterOrder(
            order_id=full.order_id, buyer=mask_buyer(full.buyer_id), status=full.status,
            promoter_code=r["promoter_code"], total_fen=full.total_fen, refunded_fen=full.refunded_fen,
            lines=[PromoterOrderLine(line_id=ln.line_id, product_id=ln.product_id, category_id=ln.category_id,
                                     quantity=ln.quantity, paid_fen=ln.paid_fen) for ln in full.lines],
            placed_at=full.placed_at, paid_at=full.paid_at, completed_at=full.completed_at,
        ))
    return PromoterOrderList(promoter_codes=sorted(codes), orders=orders,
                             next_before=rows[-1]["placed_at"] if len(rows) == limit else None)
