"""The one way tests mint identities: `who(user, *roles, audience="payout")` gives the header
the gateway would send to that service (`token(...)` the bare token). Every test, fixture and
new service's test uses this, so a change of the identity format changes one place.

    from tests.identity import who
    r = await client.get("/v1/admin/plan", headers=who("op-1", "plan_admin", audience="commission"))

Roles: shared.identity.Role (operator, finance, plan_admin, auditor, viewer); a promoter or
buyer has none. `openid`/`appid`: the user's WeChat openid for the mini-program (payout pays
only that openid; `who` gives `openid-<user>` for `TEST_APPID` unless told otherwise).

The secret is set for the whole test session (and inherited by service subprocesses) by
tests/conftest.py, before any settings object is built."""
from __future__ import annotations

import os
import time

from shared.identity import DEFAULT_KID, HEADER, sign_identity

#: a fixed, strong-enough key for the test session (never used outside tests)
TEST_IDENTITY_SECRET = "test-identity-key-0123456789abcdef-0123456789abcdef"
#: promoter codes' key in tests (separate from the identity key, as in production)
TEST_CODE_SECRET = "test-promoter-code-key-0123456789abcdef-0123456789"
#: crypto-shredding master keys in tests (base64 of 32 bytes, as in production; each its own)
TEST_PERSONAL_DATA_KEY = "dGVzdC1yZWZlcnJhbC1wZXJzb25hbC1kYXRhLWtleSE="
TEST_IDENTITY_MASTER_KEY = "dGVzdC1wYXlvdXQtaWRlbnRpdHktbWFzdGVyLWtleSE="
TEST_APPID = "wxtest0000000000"
_DEFAULT = object()


def secret() -> str:
    return os.environ.get("FENXIAO_IDENTITY_SECRET", TEST_IDENTITY_SECRET)


def token(user_id: str, *roles: str, audience: str, openid: str | None | object = _DEFAULT,
          appid: str | None | object = _DEFAULT, ttl_s: int = 3600, now: float | None = None,
          key: str | None = None, kid: str | None = None) -> str:
    """A signed identity for `user_id` with `roles`, for the service `audience`."""
    return sign_identity(key or secret(), user_id, tuple(roles), audience=audience, ttl_s=ttl_s,
                         now=time.time() if now is None else now,
                         kid=kid or os.environ.get("FENXIAO_IDENTITY_KID", DEFAULT_KID),
                         openid=f"openid-{user_id}" if openid is _DEFAULT else openid,  # type: ignore[arg-type]
                         appid=TEST_APPID if appid is _DEFAULT else appid)  # type: ignore[arg-type]


def who(user_id: str, *roles: str, audience: str, **kw) -> dict[str, str]:
    """The identity header for `user_id` with `roles`, for the service `audience`."""
    return {HEADER: token(user_id, *roles, audience=audience, **kw)}
