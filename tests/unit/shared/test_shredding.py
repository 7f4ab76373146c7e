"""Crypto-shredding plumbing and the v2 referral events: a sealed field opens only with its person's key,
for its field; without the key (shredded) nothing opens it; v1 events (nickname and note in clear) still
read, with the nickname masked for display."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from shared import shredding
from shared.contracts.referral import PromoterApplicationSubmitted, PromoterEnrolled
from shared.events import Envelope, catalog

SAMPLES = Path(__file__).resolve().parents[2] / "contracts_samples"


def test_sealed_text_opens_only_with_the_persons_key_for_its_field():
    key, other = shredding.new_data_key(), shredding.new_data_key()
    sealed = shredding.seal_text(key, "p1", "nickname", "张三丰")
    assert "张三丰".encode() not in base64.b64decode(sealed) and sealed != shredding.seal_text(key, "p1", "nickname", "张三丰")
    assert shredding.open_text(key, "p1", "nickname", sealed) == "张三丰"
    for k, person, field in ((other, "p1", "nickname"), (key, "p2", "nickname"), (key, "p1", "note")):
        with pytest.raises(shredding.InvalidTag):
            shredding.open_text(k, person, field, sealed)
    raw = bytearray(base64.b64decode(sealed))
    raw[-1] ^= 1
    with pytest.raises(shredding.InvalidTag):
        shredding.open_text(key, "p1", "nickname", base64.b64encode(bytes(raw)).decode())


def test_wrapped_keys_open_only_under_the_master_key_for_their_person(monkeypatch):
    master = shredding.master_key_from_env("FENXIAO_TEST_UNSET_MASTER", "test")
    assert len(master) == 32
    key = shredding.new_data_key()
    wrapped = shredding.wrap_key(master, "p1", key)
    assert key not in wrapped and shredding.unwrap_key(master, "p1", wrapped) == key
    with pytest.raises(shredding.InvalidTag):
        shredding.unwrap_key(master, "p2", wrapped)
    monkeypatch.setenv("FENXIAO_TEST_MASTER", base64.b64encode(b"k" * 32).decode())
    assert shredding.master_key_from_env("FENXIAO_TEST_MASTER", "test") == b"k" * 32
    monkeypatch.setenv("FENXIAO_TEST_MASTER", base64.b64encode(b"short").decode())
    with pytest.raises(ValueError):
        shredding.master_key_from_env("FENXIAO_TEST_MASTER", "test")


def test_v1_referral_events_still_read_with_the_nickname_masked():
    raw = json.loads((SAMPLES / "PromoterEnrolled.v1.json").read_text())
    raw["payload"]["nickname"] = "张三丰"
    p = catalog.payload(Envelope.model_validate(raw))
    assert isinstance(p, PromoterEnrolled) and (p.nickname, p.nickname_masked, p.nickname_sealed) == ("张三丰", "张**", None)
    raw["payload"]["nickname"] = None
    assert catalog.payload(Envelope.model_validate(raw)).nickname_masked is None
    note = json.loads((SAMPLES / "PromoterApplicationSubmitted.v1.json").read_text())
    a = catalog.payload(Envelope.model_validate(note))
    assert isinstance(a, PromoterApplicationSubmitted) and a.note == note["payload"]["note"] and a.note_sealed is None
    assert PromoterEnrolled.version == 2 and PromoterApplicationSubmitted.version == 2
