"""Identity from the mini-program gateway.

The gateway authenticates the user (WeChat login) and forwards a signed identity in the
`X-Fenxiao-Identity` header: `base64url(json({"sub", "roles", "exp"})) + "." + base64url(hmac_sha256)`.
Services verify it with the shared secret; no endpoint trusts a bare user id."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Annotated, Callable

from fastapi import Depends, HTTPException, Request

HEADER = "X-Fenxiao-Identity"


@dataclass(frozen=True)
class Identity:
    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_identity(secret: str, user_id: str, roles: tuple[str, ...] = (), ttl_s: int = 300, now: float | None = None) -> str:
    """What the gateway puts in the header (tests and the demo play the gateway)."""
    body = _b64(json.dumps({"sub": user_id, "roles": list(roles), "exp": int((now or time.time()) + ttl_s)}, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


class IdentityError(ValueError):
    pass


def verify_identity(secret: str, token: str, now: float | None = None) -> Identity:
    try:
        body, mac = token.split(".", 1)
        expected = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise IdentityError("bad identity signature")
        claims = json.loads(_unb64(body))
    except IdentityError:
        raise
    except Exception as exc:  # malformed base64/json/shape
        raise IdentityError("malformed identity") from exc
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise IdentityError("identity has no subject")
    if int(claims.get("exp", 0)) < (now or time.time()):
        raise IdentityError("identity expired")
    return Identity(user_id=claims["sub"], roles=frozenset(claims.get("roles") or ()))


def identity_dependency(secret_of: Callable[[Request], str]):
    """Build the FastAPI dependency; `secret_of` reads the secret from app state."""

    async def current_identity(request: Request) -> Identity:  # async: no thread-pool hop per request
        token = request.headers.get(HEADER)
        if not token:
            raise HTTPException(401, detail={"code": "identity_missing", "message": f"{HEADER} header required"})
        try:
            return verify_identity(secret_of(request), token)
        except IdentityError as exc:
            raise HTTPException(401, detail={"code": "identity_invalid", "message": str(exc)}) from exc

    return current_identity


def _app_secret(request: Request) -> str:
    return request.app.state.identity_secret


current_identity = identity_dependency(_app_secret)
CurrentIdentity = Annotated[Identity, Depends(current_identity)]


async def require_admin(identity: CurrentIdentity) -> Identity:
    if not identity.is_admin:
        raise HTTPException(403, detail={"code": "admin_required", "message": "admin role required"})
    return identity


AdminIdentity = Annotated[Identity, Depends(require_admin)]
