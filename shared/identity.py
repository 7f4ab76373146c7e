"""Identity from the mini-program gateway (and the operators' console gateway).

The gateway authenticates the user (WeChat login, or the operators' single sign-on) and
forwards a signed identity in the `X-Fenxiao-Identity` header:

    base64url(json(claims)) + "." + base64url(hmac_sha256(key[kid], first part))

with the claims

    kid    which key signed it (two keys are accepted while a key is rotated)
    sub    the user id
    aud    the one service it is for ("referral", "orders", "commission", "payout", ...):
           a token for one service is refused by every other
    exp    expiry (unix seconds), required, at most MAX_TTL_S ahead
    roles  operator roles (ROLES); none for a mini-program user
    openid, appid   the user's WeChat openid for the mini-program appid (payout pays only it)

Services verify it with the key ring from the settings; no endpoint trusts a bare user id.
See docs/security.md for the role matrix and what the gateway must do.

Tests mint tokens through `tests/identity.py` (`who(user, *roles, audience=...)`), which calls
`sign_identity` here; the demo's and the bench's gateways call `sign_identity` too."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Callable, Mapping

from fastapi import Depends, HTTPException, Request

HEADER = "X-Fenxiao-Identity"
#: shortest accepted HMAC key (bytes); the gateway's key is shared with it, so generate it
#: (`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)
MIN_SECRET_BYTES = 32
#: a token may be valid for at most this long (the gateway mints short-lived ones)
MAX_TTL_S = 24 * 3600
#: longest accepted header (a token is a few hundred bytes)
MAX_TOKEN_CHARS = 4096
#: public strings that have been defaults or placeholders: never accepted as a key
KNOWN_PLACEHOLDERS = frozenset({
    "dev-only-identity-secret-change-me", "CHANGE_ME_shared_with_the_gateway", "change-me", "changeme", "secret",
})
DEFAULT_KID = "k1"


class Role(StrEnum):
    """Operator roles; the matrix of who may do what is in docs/security.md."""

    OPERATOR = "operator"      # promoters, applications, bindings, order cancellation
    FINANCE = "finance"        # withdrawal review (approve / reject)
    PLAN_ADMIN = "plan_admin"  # the commission plan, merchant settings, products
    AUDITOR = "auditor"        # reads everything, runs replays, changes nothing
    VIEWER = "viewer"          # reads the admin views, changes nothing


#: every operator role may read the admin views
STAFF_ROLES: frozenset[str] = frozenset(r.value for r in Role)


@dataclass(frozen=True)
class Identity:
    user_id: str
    roles: frozenset[str] = field(default_factory=frozenset)
    audience: str = ""
    openid: str | None = None
    appid: str | None = None

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def is_staff(self) -> bool:
        """Any operator role: may read the admin views (and another user's records)."""
        return bool(self.roles & STAFF_ROLES)


class IdentityError(ValueError):
    pass


class IdentityNulError(IdentityError):
    """A NUL character in a claim: refused as invalid input (422), like a NUL anywhere else."""


def check_secret(secret: str, name: str = "FENXIAO_IDENTITY_SECRET") -> str:
    """Refuse a placeholder or a short key (a service then refuses to start)."""
    if not secret:
        raise ValueError(f"{name} is required (at least {MIN_SECRET_BYTES} random bytes)")
    if secret in KNOWN_PLACEHOLDERS or "change_me" in secret.lower() or "change-me" in secret.lower():
        raise ValueError(f"{name} is a published placeholder; generate a random key")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{name} must be at least {MIN_SECRET_BYTES} bytes")
    return secret


@dataclass(frozen=True)
class KeyRing:
    """The keys identities are verified with: the current one and, during a rotation, the
    previous one. The gateway signs with the new key once every service accepts it."""

    keys: Mapping[str, bytes]

    @classmethod
    def of(cls, secret: str, kid: str = DEFAULT_KID, previous_secret: str = "", previous_kid: str = "") -> "KeyRing":
        keys = {kid: check_secret(secret).encode()}
        if previous_secret:
            if not previous_kid or previous_kid == kid:
                raise ValueError("FENXIAO_IDENTITY_PREVIOUS_KID must be set and differ from FENXIAO_IDENTITY_KID")
            keys[previous_kid] = check_secret(previous_secret, "FENXIAO_IDENTITY_PREVIOUS_SECRET").encode()
        return cls(keys)

    @classmethod
    def from_settings(cls, settings: Any) -> "KeyRing":
        return cls.of(settings.identity_secret, settings.identity_kid, settings.identity_previous_secret,
                      settings.identity_previous_kid)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_identity(secret: str, user_id: str, roles: tuple[str, ...] | list[str] = (), *, audience: str,
                  ttl_s: int = 300, now: float | None = None, kid: str = DEFAULT_KID,
                  openid: str | None = None, appid: str | None = None) -> str:
    """What the gateway puts in the header (tests, the demo and the bench play the gateway)."""
    claims: dict[str, Any] = {"kid": kid, "sub": user_id, "aud": audience, "roles": list(roles),
                              "exp": int((time.time() if now is None else now) + ttl_s)}
    if openid is not None:
        claims["openid"] = openid
    if appid is not None:
        claims["appid"] = appid
    body = _b64(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def _clean(value: Any, what: str, max_len: int = 128) -> str:
    if isinstance(value, str) and "\x00" in value:
        raise IdentityNulError(f"identity {what} contains a NUL character")
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise IdentityError(f"identity has no valid {what}")
    return value


def verify_identity(keys: KeyRing | str, token: str, *, audience: str, now: float | None = None) -> Identity:
    """The identity in `token` if a key of the ring signed it for `audience` and it has not
    expired; IdentityError otherwise."""
    ring = keys if isinstance(keys, KeyRing) else KeyRing({DEFAULT_KID: keys.encode()})
    if len(token) > MAX_TOKEN_CHARS:
        raise IdentityError("identity too long")
    try:
        body, mac = token.split(".", 1)
        claims = json.loads(_unb64(body))
        if not isinstance(claims, dict):
            raise ValueError("claims")
        key = ring.keys.get(claims.get("kid")) if isinstance(claims.get("kid"), str) else None
        if key is None:
            raise IdentityError("identity signed with an unknown key")
        expected = hmac.new(key, body.encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(expected, _unb64(mac)):
            raise IdentityError("bad identity signature")
    except IdentityError:
        raise
    except Exception as exc:  # malformed base64/json/shape
        raise IdentityError("malformed identity") from exc
    user_id = _clean(claims.get("sub"), "subject")
    if claims.get("aud") != audience:
        raise IdentityError(f"identity is not for {audience}")
    exp = claims.get("exp")
    t = time.time() if now is None else now
    if not isinstance(exp, int) or isinstance(exp, bool):
        raise IdentityError("identity has no expiry")
    if exp < t:
        raise IdentityError("identity expired")
    if exp > t + MAX_TTL_S:
        raise IdentityError("identity valid for too long")
    roles = claims.get("roles") or []
    if not isinstance(roles, list) or len(roles) > 16:
        raise IdentityError("identity has malformed roles")
    openid, appid = claims.get("openid"), claims.get("appid")
    return Identity(user_id=user_id, roles=frozenset(_clean(r, "role", 32) for r in roles), audience=audience,
                    openid=None if openid is None else _clean(openid, "openid", 64),
                    appid=None if appid is None else _clean(appid, "appid", 64))


def identity_dependency(keys_of: Callable[[Request], KeyRing], audience_of: Callable[[Request], str]):
    """Build the FastAPI dependency; `keys_of` / `audience_of` read them from app state."""

    async def current_identity(request: Request) -> Identity:  # async: no thread-pool hop per request
        token = request.headers.get(HEADER)
        if not token:
            raise HTTPException(401, detail={"code": "identity_missing", "message": f"{HEADER} header required"})
        try:
            return verify_identity(keys_of(request), token, audience=audience_of(request))
        except IdentityNulError as exc:
            raise HTTPException(422, detail={"code": "invalid_request", "message": str(exc)}) from exc
        except IdentityError as exc:
            raise HTTPException(401, detail={"code": "identity_invalid", "message": str(exc)}) from exc

    return current_identity


def _app_keys(request: Request) -> KeyRing:
    return request.app.state.identity_keys


def _app_audience(request: Request) -> str:
    return request.app.state.identity_audience


current_identity = identity_dependency(_app_keys, _app_audience)
CurrentIdentity = Annotated[Identity, Depends(current_identity)]


def require_role(*roles: str):
    """A dependency: the identity if it holds one of `roles`, else 403 naming them."""
    wanted = frozenset(str(r) for r in roles)

    async def check(identity: CurrentIdentity) -> Identity:
        if not identity.roles & wanted:
            raise HTTPException(403, detail={"code": "role_required",
                                             "message": f"one of the roles {sorted(wanted)} is required"})
        return identity

    return check


#: reads of the admin views: any operator role
StaffIdentity = Annotated[Identity, Depends(require_role(*STAFF_ROLES))]
OperatorIdentity = Annotated[Identity, Depends(require_role(Role.OPERATOR))]
FinanceIdentity = Annotated[Identity, Depends(require_role(Role.FINANCE))]
PlanAdminIdentity = Annotated[Identity, Depends(require_role(Role.PLAN_ADMIN))]
AuditorIdentity = Annotated[Identity, Depends(require_role(Role.AUDITOR))]
