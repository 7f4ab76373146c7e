"""Promoter codes: what a share carries as the mini-program `scene`.

Unguessable (drawn from `secrets`, or an HMAC of a server key for codes a projection must
derive the same way on every replay), short, and only from the characters WeChat allows
in a `scene` (≤32 visible characters from [0-9A-Za-z!#$&'()*+,/:;=?@-._~])."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CODE_LENGTH = 10  # 62**10 ≈ 8.4e17: guessing one live code is hopeless
SCENE_MAX = 32
SCENE_RE = re.compile(r"^[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]{1,32}$")
CODE_RE = re.compile(r"^[0-9A-Za-z]{6,32}$")


def new_code(length: int = CODE_LENGTH) -> str:
    """A fresh random promoter code."""
    return "".join(secrets.choice(BASE62) for _ in range(length))


def derived_code(key: bytes, seed: str, length: int = CODE_LENGTH) -> str:
    """A code derived from a server key and a seed (e.g. the id of the event that enrolled the
    promoter): the same on every replay, unguessable without the key."""
    n = int.from_bytes(hmac.new(key, seed.encode(), hashlib.sha256).digest(), "big")
    out = []
    for _ in range(length):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(out)


def is_valid_scene(scene: str) -> bool:
    return bool(SCENE_RE.match(scene))


def looks_like_code(text: str) -> bool:
    """Cheap shape check before a lookup; anything else is an unknown promoter."""
    return bool(CODE_RE.match(text))
