"""Login and logout. The login form carries its own CSRF token (a double-submit cookie), since
there is no session yet; a successful login starts a server-side session (HttpOnly cookie)."""
from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from services.console.api.deps import OperatorDep, RuntimeDep, checked_operator, now_of, record_action, render
from services.console.domain.passwords import DUMMY_HASH, verify_password
from services.console.domain.sessions import COOKIE, LOGIN_CSRF_COOKIE, Lifetime, csrf_ok, new_token, token_hash
from services.console.store import accounts

router = APIRouter(tags=["login"], include_in_schema=False)


def _safe_next(nxt: str | None) -> str:
    return nxt if nxt and nxt.startswith("/") and not nxt.startswith("//") else "/overview"


@router.get("/login")
async def login_page(request: Request, rt: RuntimeDep, next: str | None = None, expired: int = 0, error: str | None = None):
    token = new_token()
    resp = render(request, "login.html", None, login_csrf=token, next=_safe_next(next), expired=bool(expired),
                  error=error)
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=rt.settings.cookie_secure,  # type: ignore[attr-defined]
                    max_age=3600, path="/login")
    return resp


@router.post("/login")
async def login(request: Request, rt: RuntimeDep, username: Annotated[str, Form(max_length=64)],
                password: Annotated[str, Form(max_length=256)], csrf_token: Annotated[str, Form()] = "",
                next: Annotated[str, Form()] = "/overview"):
    if not csrf_ok(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
        return RedirectResponse(f"/login?error={quote('登录表单已过期，请重试')}", status_code=303)
    now = now_of(rt)
    lifetime: Lifetime = rt.extras["lifetime"]
    async with rt.pool.acquire() as conn, conn.transaction():
        acct = await accounts.operator(conn, username)
        good = verify_password(password, acct["password_hash"] if acct else DUMMY_HASH) and acct is not None \
            and not acct["disabled"]
        if not good:
            await record_action(rt, operator=username[:64] or "?", role=acct["role"] if acct else "viewer", action="login",
                                outcome="failed", detail={"why": "bad_credentials"}, conn=conn)
        else:
            token, csrf = new_token(), new_token()
            await accounts.insert_session(conn, token_hash(token), acct["username"], acct["role"], csrf, now,
                                          lifetime.expiry(now, now))
            await accounts.purge_expired(conn, now)
            await record_action(rt, operator=acct["username"], role=acct["role"], action="login", conn=conn)
    rt.relay.kick()
    if not good:
        return RedirectResponse(f"/login?error={quote('用户名或密码错误')}&next={quote(_safe_next(next))}", status_code=303)
    resp = RedirectResponse(_safe_next(next), status_code=303)
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=rt.settings.cookie_secure, path="/")  # type: ignore[attr-defined]
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(request: Request, rt: RuntimeDep, op: OperatorDep, csrf_token: Annotated[str, Form()] = ""):
    await checked_operator(op, csrf_token)
    async with rt.pool.acquire() as conn, conn.transaction():
        await accounts.delete_session(conn, op.token_hash)
        await record_action(rt, operator=op.username, role=op.role, action="logout", conn=conn)
    rt.relay.kick()
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp
