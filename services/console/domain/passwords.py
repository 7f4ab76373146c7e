"""Operator passwords: scrypt (hashlib, RFC 7914) with a random salt per password, stored as
`scrypt$n$r$p$salt_b64$hash_b64`; verification in constant time."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P, DKLEN = 2**14, 8, 1, 32
MIN_LENGTH = 8


class WeakPasswordError(ValueError):
    pass


def hash_password(password: str, *, n: int = N, salt: bytes | None = None) -> str:
    if len(password) < MIN_LENGTH:
        raise WeakPasswordError(f"password must have at least {MIN_LENGTH} characters")
    salt = salt or os.urandom(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n, r=R, p=P, dklen=DKLEN, maxmem=64 * 1024 * 1024)
    b = lambda x: base64.b64encode(x).decode()  # noqa: E731
    return f"scrypt${n}${R}${P}${b(salt)}${b(dk)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, dk = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(dk)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


#: checked against when the user does not exist, so that a wrong name costs as much as a wrong password
DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + base64.b64encode(b"\0" * 32).decode()
