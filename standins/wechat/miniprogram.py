"""Stand-in for WeChat's mini-program server API: `POST /cgi-bin/stable_token` and
`POST /wxa/getwxacodeunlimit`, following the documented contract closely enough that a
client sending something wrong fails here as it would there.

* stable_token: checks grant_type / appid / secret; in normal mode hands out the current token
  while it is valid (a new one after it expired or was invalidated); `force_refresh` issues a
  new one and invalidates the old.
* getwxacodeunlimit: checks the token (40001 invalid, 42001 expired, 41001 missing), `scene`
  (required, ≤32 chars of [0-9A-Za-z!#$&'()*+,/:;=?@-._~]), `page` (no leading slash, no
  query; with check_path, one of the released pages when those are configured), `width`
  (280-1280), `env_version`; answers a PNG (a QR code of the scene, which is what the test
  decodes) with Content-Type image/png, or JSON {errcode, errmsg}.
* subscribeMessage.send (`POST /cgi-bin/message/subscribe/send`): checks the token, `touser`
  (40003 invalid openid), `template_id` (40037 unless it is one of `templates`), `page` (41030),
  `miniprogram_state`/`lang` and every `data` key against the template's field types (47003:
  thing ≤20 chars, amount = one optional currency symbol + ≤10 digits with decimals and an
  optional trailing 元, time/date in their fixed formats, number, letter, symbol,
  character_string, phone_number, name, phrase), and the user's one-time subscriptions
  (43101 when none is left; `subscribe(openid, template_id)` is the user tapping "allow" in
  `wx.requestSubscribeMessage`). Delivered messages land in `delivered`.
* controls for tests: `expire_current_token()` (next use gets 42001), `invalidate_current_token()`
  (40001), and `requests`, every call recorded with what was sent and what was answered.
"""
from __future__ import annotations

import io
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import segno
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

SCENE_RE = re.compile(r"^[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]{1,32}$")


@dataclass
class _Token:
    value: str
    expires_at: float
    state: str = "valid"  # valid | expired | invalid


@dataclass
class MiniProgramState:
    appid: str = "wxstandin0000000001"
    secret: str = "standin-app-secret"
    token_ttl_s: int = 7200
    #: pages of the "released version"; empty: every well-formed page exists
    released_pages: set[str] = field(default_factory=set)
    tokens: dict[str, _Token] = field(default_factory=dict)
    current: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: subscribe-message templates of the app: template id -> {data key: field type}
    templates: dict[str, dict[str, str]] = field(default_factory=dict)
    #: one-time subscriptions left: (openid, template id) -> count
    quota: dict[tuple[str, str], int] = field(default_factory=dict)
    delivered: list[dict[str, Any]] = field(default_factory=list)

    def add_template(self, template_id: str, *keys: str) -> None:
        """A template in the app's library; a key's type is its name without the number (thing1 -> thing)."""
        self.templates[template_id] = {k: re.sub(r"\d+$", "", k) for k in keys}

    def subscribe(self, openid: str, template_id: str, times: int = 1) -> None:
        """The user accepted a one-time subscription (each accept allows one send)."""
        self.quota[(openid, template_id)] = self.quota.get((openid, template_id), 0) + times

    # -- controls ----------------------------------------------------------------------------
    def expire_current_token(self) -> str | None:
        """The current token has run out: its next use answers 42001."""
        if self.current:
            self.tokens[self.current].state = "expired"
        return self.current

    def invalidate_current_token(self) -> str | None:
        """The current token was replaced elsewhere: its next use answers 40001."""
        if self.current:
            self.tokens[self.current].state = "invalid"
        return self.current

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    # -- behaviour ---------------------------------------------------------------------------
    def _usable(self, tok: _Token | None) -> bool:
        return tok is not None and tok.state == "valid" and tok.expires_at > time.time()

    def issue(self, force: bool) -> _Token:
        cur = self.tokens.get(self.current or "")
        if not force and self._usable(cur):
            return cur  # type: ignore[return-value]
        if force and cur is not None:
            cur.state = "invalid"
        tok = _Token(secrets.token_urlsafe(96), time.time() + self.token_ttl_s)  # real tokens are long: ≥512 storage
        self.tokens[tok.value] = tok
        self.current = tok.value
        return tok

    def token_error(self, value: str | None) -> tuple[int, str] | None:
        if not value:
            return 41001, "access_token missing"
        tok = self.tokens.get(value)
        if tok is None or tok.state == "invalid":
            return 40001, "invalid credential, access_token is invalid or not latest"
        if tok.state == "expired" or tok.expires_at <= time.time():
            return 42001, "access_token expired"
        return None


OPENID_RE = re.compile(r"^[0-9A-Za-z_\-]{1,64}$")
_TIME = r"(\d{4}年\d{1,2}月\d{1,2}日 ?|\d{4}-\d{2}-\d{2} )?\d{1,2}:\d{2}(:\d{2})?"
_DATE = r"(\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{2}-\d{2})( \d{1,2}:\d{2}(:\d{2})?)?"
FIELD_RULES: dict[str, re.Pattern[str]] = {
    "thing": re.compile(r"^.{1,20}$", re.S),
    "number": re.compile(r"^\d{1,32}(\.\d+)?$"),
    "letter": re.compile(r"^[A-Za-z]{1,32}$"),
    "symbol": re.compile(r"^[^\w\s]{1,5}$"),
    "character_string": re.compile(r"^[0-9A-Za-z_\-.:#@+/]{1,32}$"),
    "amount": re.compile(r"^[¥￥$]?\d{1,10}(\.\d{1,2})?元?$"),
    "phone_number": re.compile(r"^[0-9+\-() ]{1,17}$"),
    "name": re.compile(r"^([\u4e00-\u9fff·]{1,10}|[A-Za-z .]{1,20})$"),
    "phrase": re.compile(r"^[\u4e00-\u9fff]{1,5}$"),
    "time": re.compile(rf"^{_TIME}$"),
    "date": re.compile(rf"^{_DATE}$"),
}


def field_error(kind: str, value: Any) -> bool:
    """True when `value` breaks the documented limit of a `kind` field."""
    rule = FIELD_RULES.get(kind)
    return rule is None or not isinstance(value, str) or not rule.match(value)


def _err(errcode: int, errmsg: str) -> JSONResponse:
    # WeChat answers errors with HTTP 200 and a JSON body; the Content-Type tells them apart
    return JSONResponse({"errcode": errcode, "errmsg": errmsg})


class Call:
    """One recorded call (`MiniProgramState.requests`): `fail` records the errcode it answers."""

    def __init__(self, rec: dict[str, Any]) -> None:
        self.rec = rec

    def fail(self, code: int, msg: str) -> JSONResponse:
        self.rec["errcode"] = code
        return _err(code, msg)


def make_router(state: MiniProgramState) -> APIRouter:
    router = APIRouter()

    async def _json(request: Request) -> dict[str, Any] | None:
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def api(path: str, *, with_token: bool = True):
        """A WeChat API at `path`, with every call's prologue: record it, check its access_token
        (when the API takes one) and that its body is a JSON object; the handler gets the call
        and the body only when they pass, else WeChat's error is the answer."""

        def register(handle: Callable[[Call, dict[str, Any]], Awaitable[Response]]):
            @router.post(path, name=handle.__name__)
            async def receive(request: Request) -> Response:
                body = await _json(request)
                call = Call({"path": path, "json": body})
                if with_token:
                    call.rec["access_token"] = token = request.query_params.get("access_token")
                state.requests.append(call.rec)
                if with_token and (bad_token := state.token_error(token)):
                    return call.fail(*bad_token)
                if body is None:
                    return call.fail(47001, "data format error")
                return await handle(call, body)

            return receive

        return register

    @api("/cgi-bin/stable_token", with_token=False)
    async def stable_token(call: Call, body: dict[str, Any]) -> JSONResponse:
        fail = call.fail
        if body.get("grant_type") != "client_credential":
            return fail(40002, "invalid grant_type")
        if body.get("appid") != state.appid:
            return fail(40013, "invalid appid")
        if body.get("secret") != state.secret:
            return fail(40125, "invalid appsecret")
        force = body.get("force_refresh", False)
        if not isinstance(force, bool):
            return fail(40097, "invalid args: force_refresh")
        tok = state.issue(force)
        call.rec["errcode"] = 0
        call.rec["access_token"] = tok.value
        return JSONResponse({"access_token": tok.value, "expires_in": max(int(tok.expires_at - time.time()), 0)})

    @api("/wxa/getwxacodeunlimit")
    async def getwxacodeunlimit(call: Call, body: dict[str, Any]) -> Response:
        fail, rec = call.fail, call.rec
        scene = body.get("scene")
        if not isinstance(scene, str) or not SCENE_RE.match(scene):
            return fail(40169, "invalid length for scene, or the data is not json string")
        page = body.get("page", "")
        if not isinstance(page, str) or page.startswith("/") or "?" in page or (page and not re.match(r"^[\w\-./]+$", page)):
            return fail(41030, "invalid page hint")
        check_path = body.get("check_path", True)
        if check_path and page and state.released_pages and page not in state.released_pages:
            return fail(41030, "invalid page hint: page not released")
        width = body.get("width", 430)
        if not isinstance(width, int) or isinstance(width, bool) or not 280 <= width <= 1280:
            return fail(40097, "invalid args: width")
        if body.get("env_version", "release") not in ("release", "trial", "develop"):
            return fail(40097, "invalid args: env_version")
        # A real code is a round "sun" code only WeChat can read; the stand-in draws a QR of the
        # scene so that a test can decode what was requested.
        buf = io.BytesIO()
        segno.make(scene, error="h", micro=False).save(buf, kind="png", scale=max(width // 33, 4), border=4)
        rec["errcode"] = 0
        return Response(buf.getvalue(), media_type="image/png")

    @api("/cgi-bin/message/subscribe/send")
    async def subscribe_send(call: Call, body: dict[str, Any]) -> JSONResponse:
        fail, rec = call.fail, call.rec
        touser = body.get("touser")
        if not isinstance(touser, str) or not OPENID_RE.match(touser):
            return fail(40003, "invalid openid")
        template_id = body.get("template_id")
        fields = state.templates.get(template_id) if isinstance(template_id, str) else None
        if fields is None:
            return fail(40037, "invalid template_id")
        page = body.get("page", "")
        if not isinstance(page, str) or page.startswith("/") or (page and not re.match(r"^[\w\-./]+(\?[^\s#]*)?$", page)):
            return fail(41030, "invalid page")
        if body.get("miniprogram_state", "formal") not in ("developer", "trial", "formal"):
            return fail(47003, "argument invalid! miniprogram_state")
        if body.get("lang", "zh_CN") not in ("zh_CN", "en_US", "zh_HK", "zh_TW"):
            return fail(47003, "argument invalid! lang")
        data = body.get("data")
        if not isinstance(data, dict) or set(data) != set(fields):
            return fail(47003, "argument invalid! data keys do not match the template")
        for key, kind in fields.items():
            item = data[key]
            if not isinstance(item, dict) or field_error(kind, item.get("value")):
                return fail(47003, f"argument invalid! data.{key}.value invalid")
        left = state.quota.get((touser, template_id), 0)
        if left <= 0:
            return fail(43101, "user refuse to accept the msg")
        state.quota[(touser, template_id)] = left - 1
        state.delivered.append({"touser": touser, "template_id": template_id, "page": page,
                                "data": {k: v["value"] for k, v in data.items()}})
        rec["errcode"] = 0
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": len(state.delivered)})

    return router


state = MiniProgramState()
router = make_router(state)
