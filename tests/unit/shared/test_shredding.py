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


def test_wrapped_keys_open_only_under_the_master_key_for_their_person():
    master = shredding.master_key(shredding.new_master_key(), "FENXIAO_TEST_MASTER")
    assert len(master) == 32
    key = shredding.new_data_key()
    wrapped = shredding.wrap_key(master, "p1", key)
    assert key not in wrapped and shredding.unwrap_key(master, "p1", wrapped) == key
    with pytest.raises(shredding.InvalidTag):
        shredding.unwrap_key(master, "p2", wrapped)
    assert shredding.master_key(base64.b64encode(b"k" * 32).decode(), "FENXIAO_TEST_MASTER") == b"k" * 32


@pytest.mark.parametrize("value, says", [
    ("", "is required"),                                                   # no development default
    ("change-me-" + "x" * 40, "placeholder"),
    (base64.b64encode(b"short").decode(), "at least 32 bytes"),            # shorter than any secret
    (base64.b64encode(b"k" * 31).decode(), "base64 of 32 random bytes"),   # 44 characters, 31 bytes
    (base64.b64encode(b"k" * 48).decode(), "base64 of 32 random bytes"),
    ("not base64 at all, but long enough to pass the length check!", "base64 of 32 random bytes"),
])
def test_a_missing_placeholder_or_malformed_master_key_is_refused(value, says):
    with pytest.raises(ValueError, match=says) as e:
        shredding.master_key(value, "FENXIAO_TEST_MASTER")
    assert "FENXIAO_TEST_MASTER" in str(e.value)


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
