"""Refunds: per line, never more than what was paid (amount) or bought (quantity), counting
what pending and confirmed refunds already hold; CLOSED ones give their share back."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from services.orders.domain import rules
from services.orders.domain.errors import InvalidRefundError, OrderStateError, RefundExceedsRemainderError
from shared.contracts.orders import OrderLine, RefundedLine

LINES = (
    OrderLine(line_id="1", product_id="p1", quantity=3, unit_price_fen=1000, paid_fen=2700),
    OrderLine(line_id="2", product_id="p2", quantity=1, unit_price_fen=500, paid_fen=500),
)


def rl(line_id: str, quantity: int, amount_fen: int) -> RefundedLine:
    return RefundedLine.model_construct(line_id=line_id, quantity=quantity, amount_fen=amount_fen)


def test_partial_refunds_reduce_the_remainder_per_line():
    taken = [rl("1", 1, 900), rl("1", 0, 100), rl("2", 1, 500)]
    remain = rules.refundable(LINES, taken)
    assert remain["1"] == rules.Remainder("1", 1700, 2)
    assert remain["2"] == rules.Remainder("2", 0, 0)


def test_refund_within_remainder_is_accepted():
    got = rules.check_refund("paid", LINES, [rl("1", 1, 900)], [rl("1", 2, 1800)])
    assert got == (rl("1", 2, 1800),)


def test_refund_over_remaining_amount_or_quantity_is_refused():
    with pytest.raises(RefundExceedsRemainderError):
        rules.check_refund("paid", LINES, [rl("1", 1, 900)], [rl("1", 1, 1801)])
    with pytest.raises(RefundExceedsRemainderError):
        rules.check_refund("paid", LINES, [rl("1", 1, 900)], [rl("1", 3, 100)])
    with pytest.raises(RefundExceedsRemainderError):
        rules.check_refund("completed", LINES, [rl("2", 1, 500)], [rl("2", 0, 1)])


@pytest.mark.parametrize("req, code", [
    ([], "no_lines"),
    ([rl("9", 1, 100)], "unknown_line"),
    ([rl("1", 1, 0)], "nothing_to_refund"),
    ([rl("1", -1, 10)], "bad_quantity"),
    ([rl("1", 1, 10), rl("1", 1, 10)], "duplicate_line_id"),
])
def test_malformed_refunds_name_their_rule(req, code):
    with pytest.raises(InvalidRefundError) as exc:
        rules.check_refund("paid", LINES, [], req)
    assert exc.value.code == code


@pytest.mark.parametrize("status", ["placed", "cancelled"])
def test_only_paid_orders_can_be_refunded(status):
    with pytest.raises(OrderStateError):
        rules.check_refund(status, LINES, [], [rl("1", 1, 100)])


attempt = st.tuples(
    st.lists(st.tuples(st.sampled_from(["1", "2", "9"]), st.integers(-1, 4), st.integers(-10, 3000)), min_size=1,
             max_size=3),
    st.sampled_from(["pending", "abnormal", "succeeded", "closed"]),
)


@settings(max_examples=300)
@given(attempts=st.lists(attempt, max_size=25))
def test_no_sequence_of_refunds_takes_more_than_was_paid(attempts):
    """Whatever is requested and however WeChat ends each refund, what pending, abnormal and
    succeeded refunds hold never exceeds a line's paid amount or quantity."""
    book: list[tuple[str, tuple[RefundedLine, ...]]] = []
    for lines, final_status in attempts:
        held = [ln for status, lns in book if status in rules.HOLDING_REFUND_STATUSES for ln in lns]
        try:
            ok = rules.check_refund("paid", LINES, held, [rl(*t) for t in lines])
        except InvalidRefundError:
            continue
        book.append((final_status, ok))
        held = [ln for status, lns in book if status in rules.HOLDING_REFUND_STATUSES for ln in lns]
        for order_line in LINES:
            mine = [ln for ln in held if ln.line_id == order_line.line_id]
            assert sum(ln.amount_fen for ln in mine) <= order_line.paid_fen
            assert sum(ln.quantity for ln in mine) <= order_line.quantity
            assert all(ln.amount_fen > 0 and ln.quantity >= 0 for ln in mine)
    succeeded = sum(ln.amount_fen for status, lns in book if status == "succeeded" for ln in lns)
    assert succeeded <= sum(ln.paid_fen for ln in LINES)


@given(amounts=st.lists(st.integers(1, 2700), max_size=40))
def test_a_line_can_be_refunded_to_the_fen_and_not_one_more(amounts):
    held: list[RefundedLine] = []
    for a in amounts:
        try:
            held += rules.check_refund("paid", LINES, held, [rl("1", 0, a)])
        except RefundExceedsRemainderError:
            assert sum(h.amount_fen for h in held) + a > 2700
    assert sum(h.amount_fen for h in held) <= 2700
