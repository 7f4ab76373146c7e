"""Crypto-shredding plumbing: personal fields sealed with a key per person, so that deleting the key
makes every copy unreadable (the immutable Kafka log, backups, replicas) while ids and money stay.

* Each person has a random 256-bit data key, kept by the service that owns their personal data, in
  its own schema, only wrapped (AES-256-GCM) under that service's master key (from the secret store).
* A field is sealed with the person's key (AES-256-GCM, random 96-bit nonce, `<person>:<field>` as
  associated data, so a ciphertext cannot be moved to another person or field). In an event it
  travels as text: `base64(nonce ‖ ciphertext)`.
* Erasing the person deletes the wrapped key: nothing can open their ciphertexts any more.

No business rule here: which fields are personal and who holds the keys is each service's decision
(docs/audit.md, "Retention and erasure")."""
from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["InvalidTag", "master_key", "new_data_key", "new_master_key", "open_text", "seal_text", "unwrap_key", "wrap_key"]


def master_key(value: str, name: str) -> bytes:
    """A service's master key from its setting `name` (base64 of 32 random bytes, from the secret
    store). Guarded like every other secret (shared.identity.check_secret): missing, a published
    placeholder or short, or not base64 of exactly 32 bytes raises ValueError, and the service
    calls this before it serves, so it refuses to start. There is no development default: tests and
    the demo set their own key (tests/conftest.py, simulation/run.py)."""
    from shared.identity import check_secret

    check_secret(value, name)
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} must be base64 of 32 random bytes") from None
    if len(key) != 32:
        raise ValueError(f"{name} must be base64 of 32 random bytes (it is {len(key)} bytes)")
    return key


def new_master_key() -> str:
    """A fresh master key as the setting takes it (`openssl rand -base64 32` does the same)."""
    return base64.b64encode(os.urandom(32)).decode()


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def wrap_key(master: bytes, person_id: str, data_key: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(master).encrypt(nonce, data_key, f"person-key:{person_id}".encode())


def unwrap_key(master: bytes, person_id: str, wrapped: bytes) -> bytes:
    return AESGCM(master).decrypt(wrapped[:12], wrapped[12:], f"person-key:{person_id}".encode())


def seal_text(data_key: bytes, person_id: str, field: str, text: str) -> str:
    """`text` sealed for an event: base64 of nonce ‖ AES-GCM ciphertext (with its tag)."""
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(data_key).encrypt(nonce, text.encode(), f"{person_id}:{field}".encode())).decode()


def open_text(data_key: bytes, person_id: str, field: str, sealed: str) -> str:
    """The text of `seal_text`; raises InvalidTag for another person's or field's key or a changed ciphertext."""
    raw = base64.b64decode(sealed)
    return AESGCM(data_key).decrypt(raw[:12], raw[12:], f"{person_id}:{field}".encode()).decode()
