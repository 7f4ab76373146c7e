import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.identity import (
    HEADER, MAX_TTL_S, CurrentIdentity, FinanceIdentity, IdentityError, KeyRing, StaffIdentity, _b64, _unb64,
    check_secret, sign_identity, verify_identity,
)
from shared.settings import CommonSettings

SECRET = "a" * 16 + "-unit-test-identity-key-0123456789"
OLD = "b" * 16 + "-unit-test-previous-key-0123456789"
RING = KeyRing.of(SECRET)


def test_signed_identity_verifies_with_roles_audience_and_openid():
    ident = verify_identity(RING, sign_identity(SECRET, "u1", ("finance",), audience="payout", openid="o1", appid="wx1"),
                            audience="payout")
    assert (ident.user_id, ident.roles, ident.openid, ident.appid) == ("u1", {"finance"}, "o1", "wx1")
    assert ident.is_staff and ident.has_any("finance") and not ident.has_any("operator")


def test_a_token_for_one_service_is_refused_by_another():
    token = sign_identity(SECRET, "u1", audience="orders")
    with pytest.raises(IdentityError, match="not for payout"):
        verify_identity(RING, token, audience="payout")


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),        # signature changed
    lambda t: "eyJzdWIiOiJ1MiJ9" + t[t.index("."):],            # body swapped
    lambda t: "garbage",
    lambda t: "x" * 5000,
])
def test_tampered_identity_is_refused(mutate):
    with pytest.raises(IdentityError):
        verify_identity(RING, mutate(sign_identity(SECRET, "u1", audience="orders")), audience="orders")


def test_expiry_is_required_and_bounded():
    token = sign_identity(SECRET, "u1", audience="orders", ttl_s=10, now=1000)
    with pytest.raises(IdentityError, match="expired"):
        verify_identity(RING, token, audience="orders", now=2000)
    with pytest.raises(IdentityError, match="too long"):
        verify_identity(RING, sign_identity(SECRET, "u1", audience="orders", ttl_s=MAX_TTL_S + 60), audience="orders")
    # a token signed without exp (a gateway bug) is refused, even with a valid signature
    import hashlib
    import hmac
    body = _b64(json.dumps({"kid": "k1", "sub": "u1", "aud": "orders"}).encode())
    mac = _b64(hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest())
    with pytest.raises(IdentityError, match="no expiry"):
        verify_identity(RING, f"{body}.{mac}", audience="orders")


def test_rotation_accepts_both_keys_by_kid_and_nothing_else():
    ring = KeyRing.of(SECRET, "k2", previous_secret=OLD, previous_kid="k1")
    assert verify_identity(ring, sign_identity(SECRET, "u1", audience="a", kid="k2"), audience="a").user_id == "u1"
    assert verify_identity(ring, sign_identity(OLD, "u1", audience="a", kid="k1"), audience="a").user_id == "u1"
    with pytest.raises(IdentityError, match="signature"):   # the old key under the new kid
        verify_identity(ring, sign_identity(OLD, "u1", audience="a", kid="k2"), audience="a")
    with pytest.raises(IdentityError, match="unknown key"):
        verify_identity(RING, sign_identity(OLD, "u1", audience="a", kid="k9"), audience="a")
    with pytest.raises(ValueError):
        KeyRing.of(SECRET, "k1", previous_secret=OLD, previous_kid="k1")


@pytest.mark.parametrize("bad", ["", "short", "dev-only-identity-secret-change-me",
                                 "CHANGE_ME_shared_with_the_gateway", "x" * 31])
def test_placeholder_or_short_keys_refuse_to_start(bad, monkeypatch):
    with pytest.raises(ValueError):
        check_secret(bad)
    monkeypatch.setenv("FENXIAO_IDENTITY_SECRET", bad)
    with pytest.raises(ValueError):
        CommonSettings().identity_keys()   # what shared.service.create_app builds before serving


def test_settings_build_the_key_ring(monkeypatch):
    monkeypatch.setenv("FENXIAO_IDENTITY_SECRET", SECRET)
    monkeypatch.setenv("FENXIAO_IDENTITY_KID", "k2")
    monkeypatch.setenv("FENXIAO_IDENTITY_PREVIOUS_SECRET", OLD)
    monkeypatch.setenv("FENXIAO_IDENTITY_PREVIOUS_KID", "k1")
    s = CommonSettings()
    assert set(s.identity_keys().keys) == {"k1", "k2"}
    assert SECRET not in repr(s) and OLD not in repr(s)


def test_endpoints_require_a_verified_identity_and_the_role():
    app = FastAPI()
    app.state.identity_keys = RING
    app.state.identity_audience = "payout"

    @app.get("/me")
    def me(who: CurrentIdentity):
        return {"user": who.user_id}

    @app.get("/queue")
    def queue(who: StaffIdentity):
        return {"ok": True}

    @app.post("/decide")
    def decide(who: FinanceIdentity):
        return {"ok": True}

    c = TestClient(app)
    h = lambda user, *roles, aud="payout": {HEADER: sign_identity(SECRET, user, roles, audience=aud)}  # noqa: E731
    assert c.get("/me").status_code == 401
    assert c.get("/me", headers={"X-User-Id": "u1"}).status_code == 401  # a bare user id is not trusted
    assert c.get("/me", headers={HEADER: sign_identity("w" * 40, "u1", audience="payout")}).status_code == 401
    assert c.get("/me", headers=h("u1", aud="orders")).status_code == 401
    assert c.get("/me", headers=h("u1")).json() == {"user": "u1"}
    assert c.get("/me", headers=h("u\x001")).status_code == 422
    assert c.get("/queue", headers=h("u1")).status_code == 403
    assert c.get("/queue", headers=h("op", "viewer")).status_code == 200
    assert c.post("/decide", headers=h("op", "viewer")).status_code == 403
    assert c.post("/decide", headers=h("op", "auditor")).status_code == 403
    assert c.post("/decide", headers=h("op", "finance")).status_code == 200
    assert c.post("/decide", headers=h("op", "admin")).status_code == 403   # the old global role is gone
