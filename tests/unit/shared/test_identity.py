import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from shared.identity import HEADER, AdminIdentity, CurrentIdentity, IdentityError, sign_identity, verify_identity

SECRET = "s3cret"


def test_signed_identity_verifies():
    ident = verify_identity(SECRET, sign_identity(SECRET, "u1", ("admin",)))
    assert ident.user_id == "u1" and ident.is_admin


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),        # signature changed
    lambda t: "eyJzdWIiOiJ1MiJ9" + t[t.index("."):],            # body swapped
    lambda t: "garbage",
])
def test_tampered_identity_is_refused(mutate):
    with pytest.raises(IdentityError):
        verify_identity(SECRET, mutate(sign_identity(SECRET, "u1")))


def test_expired_identity_is_refused():
    token = sign_identity(SECRET, "u1", ttl_s=10, now=1000)
    with pytest.raises(IdentityError, match="expired"):
        verify_identity(SECRET, token, now=2000)


def test_endpoints_require_a_verified_identity_and_admin_role():
    app = FastAPI()
    app.state.identity_secret = SECRET

    @app.get("/me")
    def me(who: CurrentIdentity):
        return {"user": who.user_id}

    @app.get("/admin")
    def admin(who: AdminIdentity):
        return {"ok": True}

    c = TestClient(app)
    assert c.get("/me").status_code == 401
    assert c.get("/me", headers={"X-User-Id": "u1"}).status_code == 401  # a bare user id is not trusted
    assert c.get("/me", headers={HEADER: sign_identity("wrong", "u1")}).status_code == 401
    assert c.get("/me", headers={HEADER: sign_identity(SECRET, "u1")}).json() == {"user": "u1"}
    assert c.get("/admin", headers={HEADER: sign_identity(SECRET, "u1")}).status_code == 403
    assert c.get("/admin", headers={HEADER: sign_identity(SECRET, "op", ("admin",))}).status_code == 200
