"""Orders for the gateway: create (idempotent on out_trade_no), read, cancel unpaid, confirm
receipt, request refunds. The buyer acts on their own orders; the operator role on any;
the other operator roles read any order and change none (docs/security.md)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Mapping

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from services.orders import commands
from services.orders.api.deps import ClockDep, ConnDep, RuntimeDep, SettingsDep, payer_openid
from services.orders.api.schemas import (
    OrderCreate, OrderList, OrderPublic, PaymentParamsPublic, PaymentPublic, RefundCreate, RefundLinePublic,
    RefundPublic, order_public,
)
from services.orders.domain.errors import (
    OrderNotFoundError, OrdersError, OrderStateError, WeChatPayUnavailableError,
)
from services.orders.store import orders as store
from shared.contracts.orders import RefundedLine
from shared.identity import CurrentIdentity, Identity, Role
from shared.limits import rate_limited

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/v1/orders", tags=["orders"])


def _visible(row: Mapping[str, Any] | None, who: Identity, order_id: str, *, change: bool = False) -> Mapping[str, Any]:
    # Someone else's order is reported as absent, so ids cannot be probed.
    if row is not None and row["buyer_id"] == who.user_id:
        return row
    if not who.is_staff:
        raise OrderNotFoundError(f"no order {order_id}")
    if change and not who.has_any(Role.OPERATOR):
        raise HTTPException(403, detail={"code": "role_required", "message": "the operator role changes others' orders"})
    if row is None:
        raise OrderNotFoundError(f"no order {order_id}")
    return row


async def _view(conn, order_id: str) -> OrderPublic:
    row = await store.get_order(conn, order_id)
    assert row is not None
    lines = await store.get_lines_of(conn, [order_id])
    refunds = await store.refund_line_rows(conn, [order_id])
    return order_public(row, lines.get(order_id, []), refunds.get(order_id, []))


@router.post("", response_model=OrderPublic, status_code=status.HTTP_201_CREATED,
             dependencies=[Depends(rate_limited("order"))],
             responses={429: {"description": "rate limited (`Retry-After` says when to try again)"},
                        200: {"description": "the same out_trade_no with the same content: the existing order"},
                        409: {"description": "out_trade_no already used for a different order"},
                        422: {"description": "lines do not add up (code names the rule)"}})
async def create_order(body: OrderCreate, who: CurrentIdentity, conn: ConnDep, clock: ClockDep,
                       settings: SettingsDep, rt: RuntimeDep, request: Request, response: Response) -> OrderPublic:
    """Place an order. When WeChat Pay calls are configured and the identity carries the
    buyer's openid, the JSAPI prepay is made at once and `payment` holds the
    wx.requestPayment parameters; otherwise (or if WeChat did not answer) `payment` is null
    and `POST /v1/orders/{id}/payment` gets them."""
    async with conn.transaction():
        placed = await commands.place_order(conn, body.draft(who.user_id), now=clock(),
                                            unpaid_timeout_minutes=settings.unpaid_timeout_minutes)
    if placed.created:
        rt.relay.kick()
    else:
        response.status_code = status.HTTP_200_OK
    pay, openid = rt.extras.get("pay"), payer_openid(request, who)
    if pay is not None and placed.created:
        await pay.watch(conn, placed.order_id)
    view = await _view(conn, placed.order_id)
    if pay is not None and openid and view.status == "placed":
        try:
            params = await pay.prepay(placed.order_id, buyer_id=who.user_id, openid=openid, conn=conn)
            view.payment = PaymentParamsPublic(**params.__dict__)
        except OrdersError as exc:  # the order stands; the mini-program asks for the payment again
            log.warning("prepay_on_placement_failed", order_id=placed.order_id, code=exc.code, reason=str(exc))
    return view


@router.post("/{order_id}/payment", response_model=PaymentPublic,
             responses={409: {"description": "already paid, cancelled, or the time to pay has run out"},
                        422: {"description": "the identity carries no openid (openid_required)"},
                        502: {"description": "WeChat refused the prepay (wechat_refused)"},
                        503: {"description": "WeChat's answer is unknown; repeat the request (wechat_unavailable)"}})
async def create_payment(order_id: str, who: CurrentIdentity, conn: ConnDep, rt: RuntimeDep,
                         request: Request) -> PaymentPublic:
    """The buyer's wx.requestPayment parameters for an unpaid order: the JSAPI prepay
    (`POST /v3/pay/transactions/jsapi`) is made once and its prepay_id reused while valid;
    each call signs fresh parameters (paySign with the merchant key)."""
    row = await store.get_order(conn, order_id)
    if row is None or row["buyer_id"] != who.user_id:  # only the buyer pays; others see nothing
        raise OrderNotFoundError(f"no order {order_id}")
    pay = rt.extras.get("pay")
    if pay is None:
        raise WeChatPayUnavailableError("WeChat Pay calls are not configured on this service")
    params = await pay.prepay(order_id, buyer_id=who.user_id, openid=payer_openid(request, who), conn=conn)
    return PaymentPublic(order_id=order_id, out_trade_no=row["out_trade_no"], total_fen=row["total_fen"],
                         pay_before=row["due_at"], params=PaymentParamsPublic(**params.__dict__))


@router.get("", response_model=OrderList)
async def list_orders(who: CurrentIdentity, conn: ConnDep,
                      buyer_id: Annotated[str | None, Query(max_length=128, description="operator roles only; default: yourself")] = None,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20, before: datetime | None = None) -> OrderList:
    buyer = buyer_id if (buyer_id and who.is_staff) else who.user_id
    rows = await store.list_by_buyer(conn, buyer, limit=limit, before=before)
    ids = [r["order_id"] for r in rows]
    lines, refunds = await store.get_lines_of(conn, ids), await store.refund_line_rows(conn, ids)
    orders = [order_public(r, lines.get(r["order_id"], []), refunds.get(r["order_id"], [])) for r in rows]
    return OrderList(orders=orders, next_before=rows[-1]["placed_at"] if len(rows) == limit else None)


@router.get("/{order_id}", response_model=OrderPublic)
async def get_order(order_id: str, who: CurrentIdentity, conn: ConnDep) -> OrderPublic:
    _visible(await store.get_order(conn, order_id), who, order_id)
    return await _view(conn, order_id)


@router.post("/{order_id}/cancel", response_model=OrderPublic,
             responses={409: {"description": "the order is already paid"}})
async def cancel_order(order_id: str, who: CurrentIdentity, conn: ConnDep, clock: ClockDep,
                       rt: RuntimeDep) -> OrderPublic:
    """Cancel an unpaid order (the buyer changed their mind, or an operator)."""
    row = _visible(await store.get_order(conn, order_id), who, order_id, change=True)
    reason = "buyer_cancelled" if row["buyer_id"] == who.user_id else "operator_cancelled"
    pay = rt.extras.get("pay")
    if pay is not None and row["status"] == "placed":
        # WeChat may know the order (a prepay, made here or elsewhere): close it there and query first
        outcome = await pay.cancel(order_id, reason=reason, conn=conn)
        if outcome == "retry":
            raise WeChatPayUnavailableError("WeChat did not confirm the close; try again")
        row = await store.get_order(conn, order_id)
        if row["status"] in ("paid", "completed"):
            raise OrderStateError("the buyer paid before the close reached WeChat", code="order_already_paid")
        return await _view(conn, order_id)
    async with conn.transaction():
        changed = await commands.cancel_unpaid(conn, order_id, reason=reason, now=clock())
    if changed:
        rt.relay.kick()
    return await _view(conn, order_id)


@router.post("/{order_id}/confirm-receipt", response_model=OrderPublic,
             responses={409: {"description": "the order is not paid"}})
async def confirm_receipt(order_id: str, who: CurrentIdentity, conn: ConnDep, clock: ClockDep,
                          rt: RuntimeDep) -> OrderPublic:
    """The buyer (or an operator) confirms receipt: OrderCompleted(reason="receipt_confirmed")."""
    _visible(await store.get_order(conn, order_id), who, order_id, change=True)
    async with conn.transaction():
        changed = await commands.confirm_receipt(conn, order_id, now=clock())
    if changed:
        rt.relay.kick()
    return await _view(conn, order_id)


async def _refund_public(conn, out_refund_no: str) -> RefundPublic:
    r = await store.get_refund(conn, out_refund_no)
    assert r is not None
    lines = (await store.refund_lines_of(conn, [out_refund_no])).get(out_refund_no, [])
    return _refund_of(r, lines)


def _refund_of(r: Mapping[str, Any], lines) -> RefundPublic:
    return RefundPublic(
        out_refund_no=r["out_refund_no"], order_id=r["order_id"], status=r["status"], amount_fen=r["amount_fen"],
        lines=[RefundLinePublic(line_id=ln["line_id"], quantity=ln["quantity"], amount_fen=ln["amount_fen"])
               for ln in lines],
        reason=r["reason"], requested_by=r["requested_by"], requested_at=r["requested_at"], refund_id=r["refund_id"],
        finished_at=r["finished_at"],
    )


@router.post("/{order_id}/refunds", response_model=RefundPublic, status_code=status.HTTP_201_CREATED,
             responses={200: {"description": "the same out_refund_no with the same lines: the existing refund"},
                        409: {"description": "out_refund_no used for another refund, or the order is not paid"},
                        422: {"description": "more than remains refundable on a line (refund_exceeds_remainder)"}})
async def request_refund(order_id: str, body: RefundCreate, who: CurrentIdentity, conn: ConnDep, clock: ClockDep,
                         response: Response) -> RefundPublic:
    """Request a (partial) refund per line. Stored as pending; WeChat's REFUND.SUCCESS notice
    confirms it and only then is OrderRefunded published."""
    _visible(await store.get_order(conn, order_id), who, order_id, change=True)
    lines = [RefundedLine.model_construct(line_id=ln.line_id, quantity=ln.quantity, amount_fen=ln.amount_fen)
             for ln in body.lines]
    async with conn.transaction():
        res = await commands.request_refund(conn, order_id, out_refund_no=body.out_refund_no, lines=lines,
                                            reason=body.reason, requested_by=who.user_id, now=clock())
    if not res.created:
        response.status_code = status.HTTP_200_OK
    return await _refund_public(conn, res.out_refund_no)


@router.get("/{order_id}/refunds", response_model=list[RefundPublic])
async def list_refunds(order_id: str, who: CurrentIdentity, conn: ConnDep) -> list[RefundPublic]:
    _visible(await store.get_order(conn, order_id), who, order_id)
    rows = await store.list_refunds(conn, order_id)
    lines = await store.refund_lines_of(conn, [r["out_refund_no"] for r in rows])
    return [_refund_of(r, lines.get(r["out_refund_no"], [])) for r in rows]
