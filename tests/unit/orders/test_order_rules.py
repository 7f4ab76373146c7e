"""Intake rules: lines add up, paid per line within price x quantity, quantities > 0."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from services.orders.domain import rules
from services.orders.domain.errors import InvalidOrderError


def line(**kw) -> rules.LineDraft:
    base = dict(product_id="p1", quantity=2, unit_price_fen=1000, paid_fen=1800)
    return rules.LineDraft(**{**base, **kw})


def draft(lines=(line(),), postage_fen=500, total_fen=2300, **kw) -> rules.OrderDraft:
    return rules.OrderDraft(out_trade_no=kw.pop("out_trade_no", "T20240001"), buyer_id=kw.pop("buyer_id", "u1"),
                            lines=tuple(lines), postage_fen=postage_fen, total_fen=total_fen, **kw)


def code_of(d: rules.OrderDraft) -> str:
    with pytest.raises(InvalidOrderError) as exc:
        rules.validate_order(d)
    return exc.value.code


def test_valid_order_keeps_lines_and_numbers_them_by_position():
    out = rules.validate_order(draft(lines=[line(), line(product_id="p2", quantity=1, unit_price_fen=300, paid_fen=300)],
                                     total_fen=1800 + 300 + 500))
    assert [ln.line_id for ln in out] == ["1", "2"]
    assert out[0].paid_fen == 1800 and out[0].quantity == 2


def test_total_must_equal_lines_plus_postage():
    assert code_of(draft(total_fen=2299)) == "lines_do_not_add_up"
    assert code_of(draft(total_fen=2301)) == "lines_do_not_add_up"


def test_line_cannot_be_paid_above_price_times_quantity():
    assert code_of(draft(lines=[line(paid_fen=2001)], total_fen=2501)) == "line_paid_exceeds_price"
    # exactly price x quantity is allowed (no discount)
    assert rules.validate_order(draft(lines=[line(paid_fen=2000)], total_fen=2500))


@pytest.mark.parametrize("q", [0, -1])
def test_quantity_must_be_positive(q):
    assert code_of(draft(lines=[line(quantity=q, paid_fen=0)], total_fen=500)) == "bad_quantity"


def test_other_refusals_name_their_rule():
    assert code_of(draft(lines=[])) == "no_lines"
    assert code_of(draft(lines=[line(line_id="a"), line(line_id="a")], total_fen=4100)) == "duplicate_line_id"
    assert code_of(draft(out_trade_no="bad no!")) == "bad_out_trade_no"
    assert code_of(draft(lines=[line(paid_fen=0)], postage_fen=0, total_fen=0)) == "nothing_to_pay"
    assert code_of(draft(postage_fen=-1, total_fen=1799)) == "negative_amount"
    assert code_of(draft(lines=[line(paid_fen=-5)], total_fen=495)) == "negative_amount"


def test_fingerprint_tells_same_content_from_other_content():
    assert draft().fingerprint() == draft().fingerprint()
    assert draft().fingerprint() != draft(buyer_id="u2").fingerprint()
    assert draft().fingerprint() != draft(lines=[line(paid_fen=1700)], total_fen=2200).fingerprint()
    assert draft().fingerprint() != draft(promoter_code="P1").fingerprint()


lines_st = st.lists(
    st.tuples(st.integers(1, 20), st.integers(0, 50_000), st.floats(0, 1)).map(
        lambda t: line(quantity=t[0], unit_price_fen=t[1], paid_fen=int(t[0] * t[1] * t[2]))),
    min_size=1, max_size=6,
)


@given(lines=lines_st, postage=st.integers(0, 2_000), delta=st.integers(-3, 3))
def test_an_order_is_accepted_exactly_when_it_adds_up(lines, postage, delta):
    lines = [rules.LineDraft(**{**ln.__dict__, "line_id": str(i)}) for i, ln in enumerate(lines)]
    total = sum(ln.paid_fen for ln in lines) + postage + delta
    d = draft(lines=lines, postage_fen=postage, total_fen=total)
    if delta != 0 or total <= 0:
        with pytest.raises(InvalidOrderError):
            rules.validate_order(d)
    else:
        out = rules.validate_order(d)
        assert sum(ln.paid_fen for ln in out) + postage == total


def test_buyer_is_masked_for_promoters():
    assert rules.mask_buyer("user-123456") == "us*******56"
    assert rules.mask_buyer("abc") == "***"
    assert "123456" not in rules.mask_buyer("user-123456")


def test_payment_instant_is_never_before_the_order_was_placed():
    """WeChat's success_time is whole seconds: an order placed at 12:00:00.700 and paid "at
    12:00:00" was paid after 12:00:00.700, or a binding made at 12:00:00.500 would be missed."""
    from datetime import datetime, timedelta, timezone

    from shared.contracts.orders import OrderLine, OrderPlaced
    from services.orders.domain import events as ev

    placed_at = datetime(2026, 11, 30, 12, 0, 0, 700000, tzinfo=timezone.utc)
    order = OrderPlaced(order_id="o", buyer_id="b", lines=(OrderLine(line_id="1", product_id="p", quantity=1,
                        unit_price_fen=100, paid_fen=100),), postage_fen=0, total_fen=100, placed_at=placed_at)
    assert ev.paid(order, "t", placed_at.replace(microsecond=0)).paid_at == placed_at
    later = placed_at + timedelta(seconds=3)
    assert ev.paid(order, "t", later.replace(microsecond=0)).paid_at == later.replace(microsecond=0)
