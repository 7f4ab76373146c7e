"""Payee identity for tax (real name and resident ID number), encrypted at rest with a key per
person, and what may be shown of it.

* Each person has a random 256-bit data key, stored only wrapped (AES-256-GCM) under the service's
  master key. Every personal field is sealed with the person's data key (AES-256-GCM, 96-bit random
  nonce, the person id and field name as associated data, so a ciphertext cannot be moved to another
  person or field). Deleting the person's wrapped key makes every ciphertext of that person
  unreadable at once (crypto-shredding, see docs/tax.md), while amounts and ids stay.
* Consent is required and recorded (the purpose and the version of the text the person agreed to).

Pure: no I/O; keys come in as bytes."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.payout.domain.errors import PayoutError
from shared.shredding import new_data_key, unwrap_key, wrap_key  # noqa: F401  (the person keys: shared plumbing)

CONSENT_PURPOSE = "tax_withholding_and_platform_reporting"
CONSENT_VERSION = "2026-12"

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_NAME = re.compile(r"^[\u4e00-\u9fff\u3400-\u4dbf·A-Za-z .'-]{2,64}$")


class InvalidIdNumberError(PayoutError):
    pass


class InvalidRealNameError(PayoutError):
    pass


class ConsentRequiredError(PayoutError):
    pass


class EmptyPeriodError(PayoutError):
    pass


class PayeeIdentityMissingError(PayoutError):
    status = 404


class PersonalDataErasedError(PayoutError):
    """The person's key was shredded: their personal data can no longer be read."""

    status = 410


def check_id_number(id_number: str) -> str:
    """An 18-character resident identity number (GB 11643-1999): 17 digits, a valid birth date and
    the ISO 7064 MOD 11-2 check character. Returns it normalised (upper-case X)."""
    n = id_number.strip().upper()
    if not re.fullmatch(r"\d{17}[\dX]", n):
        raise InvalidIdNumberError("an ID number is 17 digits and a check digit or X")
    try:
        date(int(n[6:10]), int(n[10:12]), int(n[12:14]))
    except ValueError:
        raise InvalidIdNumberError("the ID number's birth date is not a date") from None
    if _ID_CHECK[sum(int(c) * w for c, w in zip(n[:17], _ID_WEIGHTS)) % 11] != n[17]:
        raise InvalidIdNumberError("the ID number's check digit is wrong")
    return n


def check_real_name(name: str) -> str:
    n = name.strip()
    if not _NAME.fullmatch(n):
        raise InvalidRealNameError("a real name is 2 to 64 letters (Chinese or Latin, with · . ' - and spaces)")
    return n


def mask_name(name: str) -> str:
    return name[0] + "*" * (len(name) - 1)


def mask_id(id_number: str) -> str:
    return id_number[:1] + "*" * 13 + id_number[-4:]


# -- keys ---------------------------------------------------------------------------------------
def seal(data_key: bytes, person_id: str, field: str, text: str) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(data_key).encrypt(nonce, text.encode(), f"{person_id}:{field}".encode())


def open_sealed(data_key: bytes, person_id: str, field: str, sealed: bytes) -> str:
    return AESGCM(data_key).decrypt(sealed[:12], sealed[12:], f"{person_id}:{field}".encode()).decode()


@dataclass(frozen=True)
class PayeeIdentity:
    promoter_id: str
    real_name: str
    id_number: str
