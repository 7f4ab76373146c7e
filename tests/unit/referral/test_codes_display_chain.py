"""Promoter codes, money and nickname display, and the chain at an instant."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from services.referral.domain.chain import Link, chain_at
from services.referral.domain.codes import SCENE_MAX, derived_code, is_valid_scene, looks_like_code, new_code
from shared.display import format_fen, mask_nickname

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_new_codes_are_valid_scenes_and_distinct():
    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(is_valid_scene(c) and looks_like_code(c) and len(c) <= SCENE_MAX for c in codes)


@given(st.binary(min_size=1, max_size=32), st.text(max_size=50))
def test_derived_codes_are_stable_valid_scenes(key, seed):
    c = derived_code(key, seed)
    assert c == derived_code(key, seed) and is_valid_scene(c) and looks_like_code(c)


def test_scene_alphabet():
    assert is_valid_scene("r=8Fk2Zq&x-._~!#$'()*+,/:;?@")
    assert not is_valid_scene("a" * 33)
    assert not is_valid_scene("")
    assert not is_valid_scene("%E4%B8%AD")  # no %, so no URL-encoded Chinese
    assert not is_valid_scene("中文")
    assert not is_valid_scene("a b")


@given(st.integers(min_value=0, max_value=10**12))
def test_format_fen_round_trips_exactly(fen):
    text = format_fen(fen)
    assert text.startswith("¥")
    yuan, cents = text[1:].split(".")
    assert len(cents) == 2 and int(yuan) * 100 + int(cents) == fen


def test_format_fen_examples():
    assert [format_fen(x) for x in (0, 1, 10, 1234, 100000)] == ["¥0.00", "¥0.01", "¥0.10", "¥12.34", "¥1000.00"]


def test_mask_nickname():
    assert mask_nickname("张三") == "张*"
    assert mask_nickname("张三丰") == "张**"
    assert mask_nickname("张") == "*"
    assert mask_nickname(None) == "*"
    assert mask_nickname("Alice") == "A****"


def test_chain_at_an_instant():
    links = [
        Link("c", "a", T0, T0 + timedelta(days=30)),
        Link("c", "b", T0 + timedelta(days=30)),
        Link("b", "top", T0 + timedelta(days=10)),
        Link("a", "x", T0),
    ]
    assert [l.promoter_id for l in chain_at(links, "c", T0 + timedelta(days=1))] == ["a", "x"]
    assert [l.promoter_id for l in chain_at(links, "c", T0 + timedelta(days=30))] == ["b", "top"]
    assert chain_at(links, "c", T0 - timedelta(seconds=1)) == ()
    # level 2 is the referrer's referrer at the same instant: b had none before day 10
    assert [l.promoter_id for l in chain_at([Link("c", "b", T0), Link("b", "top", T0 + timedelta(days=10))], "c", T0)] == ["b"]
    # never more than two levels
    long = [Link(f"u{i}", f"u{i + 1}", T0) for i in range(5)]
    assert len(chain_at(long, "u0", T0)) == 2
