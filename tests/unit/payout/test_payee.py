"""Payee identity rules (pure): the resident ID number's check character and birth date, names,
masking, and the per-person AES-GCM sealing (bound to the person and the field; a shredded key
leaves nothing to decrypt with)."""
from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from services.payout.domain import payee


def test_id_number_checks():
    assert payee.check_id_number("11010519491231002x") == "11010519491231002X"  # the standard's example
    for bad in ("11010519491231002", "110105194912310021", "11010519491331002X", "A1010519491231002X"):
        with pytest.raises(payee.InvalidIdNumberError):
            payee.check_id_number(bad)


def test_names_and_masks():
    assert payee.check_real_name(" 欧阳·娜娜 ") == "欧阳·娜娜"
    with pytest.raises(payee.InvalidRealNameError):
        payee.check_real_name("x")
    with pytest.raises(payee.InvalidRealNameError):
        payee.check_real_name("张三<script>")
    assert payee.mask_name("张三丰") == "张**" and payee.mask_id("11010519491231002X") == "1*************002X"


def test_sealing_is_bound_to_person_and_field_and_needs_the_persons_key():
    master = payee.new_data_key()
    key = payee.new_data_key()
    wrapped = payee.wrap_key(master, "p1", key)
    assert payee.unwrap_key(master, "p1", wrapped) == key
    with pytest.raises(InvalidTag):
        payee.unwrap_key(master, "p2", wrapped)  # a wrapped key moved to another person
    sealed = payee.seal(key, "p1", "id_number", "11010519491231002X")
    assert b"110105" not in sealed and payee.open_sealed(key, "p1", "id_number", sealed) == "11010519491231002X"
    for person, field in (("p2", "id_number"), ("p1", "real_name")):
        with pytest.raises(InvalidTag):
            payee.open_sealed(key, person, field, sealed)
    with pytest.raises(InvalidTag):
        payee.open_sealed(payee.new_data_key(), "p1", "id_number", sealed)  # any other key: nothing
    assert payee.seal(key, "p1", "id_number", "x") != payee.seal(key, "p1", "id_number", "x")  # random nonces
