"""Stand-in for WeChat Pay's merchant transfer (商家转账, 2025 version), for tests and the demo.

It follows the documented contract (wechat.md §2) and refuses what WeChat would refuse:

* every call must carry the merchant's `Authorization` (WECHATPAY2-SHA256-RSA2048, signing
  `METHOD\\nPATH\\nts\\nnonce\\nbody\\n`, fresh within 5 minutes) -> else 401 SIGN_ERROR;
* the create body is checked field by field (appid, out_bill_no `[0-9A-Za-z]{1,32}`, scene 1005
  with its two report infos 岗位类型/报酬说明, user_recv_perception 劳务报酬, amount > 0,
  remark, notify_url, `user_name` present from 200000 fen and decryptable with the platform
  key named in `Wechatpay-Serial`, no unknown fields) -> 400 PARAM_ERROR / INVALID_REQUEST;
* bills are idempotent on out_bill_no: the same request returns the existing bill, a
  different request for an existing number is 400 PARAM_ERROR;
* every answer is signed with the platform key (`Wechatpay-*` headers over `ts\\nnonce\\nbody\\n`);
* final states (SUCCESS, FAIL, CANCELLED) are announced by MCHTRANSFER.BILL.FINISHED notices,
  resource encrypted with the APIv3 key (AEAD_AES_256_GCM, associated data `mch_payment`).

Controls for tests and the demo (also over HTTP under `/_standin/transfer/...`):

    s = TransferStandin.generate(mchid=..., appid=..., merchant_serial=..., merchant_public_key=...)
    s.behave(openid_or_bill_no, outcome="success" | "fail" | "overdue",
             fault=None | "slow" | "error500", fault_times=1, slow_s=...)
    await s.confirm(out_bill_no) / await s.confirm(package=package_info)   # the user confirms
    await s.lapse(out_bill_no)          # never confirmed: FAIL with OVERDUE_CLOSE
    await s.notify(out_bill_no, times=2)  # (re)send the final notice, same notice id
    s.create_calls                      # every create call, to assert no second bill was opened

`python -m standins.wechat.transfer --keys .local/wechat --port 8199` serves it alone with
dev keys written to (or read from) that directory and prints the payout settings to use."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel

from shared.wechatpay import encrypt_resource, notify_message, oaep_decrypt, sign
from shared.wechatpay.crypto import FRESHNESS_S, SIGNATURE_TYPE, parse_authorization, verify

CST = timezone(timedelta(hours=8))
CREATE_PATH = "/v3/fund-app/mch-transfer/transfer-bills"
QUERY_PREFIX = "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/"
OUT_BILL_NO_RE = re.compile(r"^[0-9A-Za-z]{1,32}$")
REAL_NAME_FEN = 200_000
MIN_TRANSFER_FEN = 10  # 0.1 yuan
SCENE_REPORT_TYPES = {"1005": ("岗位类型", "报酬说明"), "1000": ("活动名称", "奖励说明")}
SCENE_PERCEPTIONS = {"1005": ("劳务报酬",), "1000": ("现金奖励", "活动奖励")}
CREATE_FIELDS = {"appid", "out_bill_no", "transfer_scene_id", "openid", "user_name", "transfer_amount",
                 "transfer_remark", "notify_url", "user_recv_perception", "transfer_scene_report_infos"}
FINAL = {"SUCCESS", "FAIL", "CANCELLED"}

Outcome = Literal["success", "fail", "overdue"]
Fault = Literal["slow", "error500"]

# Fixed dev identities for the demo (keys themselves are generated into a directory).
DEV_MCHID = "1900000001"
DEV_APPID = "wx8888888888888888"
DEV_MERCHANT_SERIAL = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
DEV_PLATFORM_SERIAL = "PUB_KEY_ID_0119000000012025120100000000000001"
DEV_APIV3_KEY = "fenxiaoDevApiV3Key0123456789abcd"


class StandinError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Behaviour:
    """What happens to a bill: its outcome, and faults injected into its create calls."""

    #: success: waits for the user, SUCCESS on confirm; fail: FAIL soon after creation;
    #: overdue: the user never confirms (confirm is ignored), `lapse()` closes it
    outcome: Outcome = "success"
    fail_reason: str = "PAYEE_ACCOUNT_ABNORMAL"
    #: slow: answer after `slow_s` (longer than the client's timeout) though the bill exists;
    #: error500: answer 500 SYSTEM_ERROR though the bill exists. Both: outcome unknown to the client.
    fault: Fault | None = None
    fault_times: int = 1
    slow_s: float = 5.0
    fail_after_s: float = 0.05


@dataclass
class Bill:
    out_bill_no: str
    transfer_bill_no: str
    fingerprint: str
    request: dict[str, Any]
    user_name: str | None
    notify_url: str
    behaviour: Behaviour
    state: str = "ACCEPTED"
    fail_reason: str | None = None
    package_info: str | None = None
    create_time: str = ""
    update_time: str = ""
    notice_id: str | None = None
    faults_done: int = 0

    def view(self, mchid: str) -> dict[str, Any]:
        """The query answer."""
        out = {"mch_id": mchid, "out_bill_no": self.out_bill_no, "transfer_bill_no": self.transfer_bill_no,
               "appid": self.request["appid"], "state": self.state, "transfer_amount": self.request["transfer_amount"],
               "transfer_remark": self.request["transfer_remark"], "openid": self.request["openid"],
               "create_time": self.create_time, "update_time": self.update_time}
        if self.fail_reason:
            out["fail_reason"] = self.fail_reason
        if self.state == "WAIT_USER_CONFIRM" and self.package_info:
            out["package_info"] = self.package_info
        return out


@dataclass(frozen=True)
class CreateCall:
    out_bill_no: str | None
    status: int
    code: str | None
    body: dict[str, Any] | None
    at: float


@dataclass(frozen=True)
class Delivery:
    notice_id: str
    out_bill_no: str
    state: str
    url: str
    status: int | None
    error: str | None = None


def _now_text() -> str:
    return datetime.now(CST).isoformat(timespec="seconds")


@dataclass
class TransferStandin:
    mchid: str
    appid: str
    #: merchant API keys the stand-in accepts: serial_no -> public key
    merchant_keys: dict[str, rsa.RSAPublicKey]
    platform_key: rsa.RSAPrivateKey
    platform_serial: str
    apiv3_key: str
    #: how notices reach the notify URL (tests: httpx.ASGITransport(app) of the service)
    notice_transport: httpx.AsyncBaseTransport | None = None
    default_behaviour: Behaviour = field(default_factory=Behaviour)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    bills: dict[str, Bill] = field(default_factory=dict)
    create_calls: list[CreateCall] = field(default_factory=list)
    query_calls: list[str] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    _tasks: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        if len(self.apiv3_key.encode()) != 32:
            raise ValueError("the APIv3 key is 32 bytes")

    @classmethod
    def generate(cls, *, mchid: str = DEV_MCHID, appid: str = DEV_APPID, merchant_serial: str = DEV_MERCHANT_SERIAL,
                 merchant_public_key: rsa.RSAPublicKey, platform_serial: str = DEV_PLATFORM_SERIAL,
                 apiv3_key: str | None = None, **kw: Any) -> "TransferStandin":
        """A stand-in with a fresh platform key (public-key mode)."""
        return cls(mchid=mchid, appid=appid, merchant_keys={merchant_serial: merchant_public_key},
                   platform_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                   platform_serial=platform_serial, apiv3_key=apiv3_key or secrets.token_hex(16), **kw)

    @property
    def platform_public_pem(self) -> str:
        return self.platform_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    # -- controls --------------------------------------------------------------------------------
    def behave(self, key: str | None = None, **kw: Any) -> Behaviour:
        """Set the behaviour of bills for one openid or one out_bill_no (None: the default)."""
        b = Behaviour(**kw)
        if key is None:
            self.default_behaviour = b
        else:
            self.behaviours[key] = b
        return b

    def bill(self, out_bill_no: str) -> Bill:
        return self.bills[out_bill_no]

    def bills_for(self, openid: str) -> list[Bill]:
        return [b for b in self.bills.values() if b.request["openid"] == openid]

    def creates_for(self, openid: str) -> list[CreateCall]:
        return [c for c in self.create_calls if c.body and c.body.get("openid") == openid]

    def _by_package(self, package: str) -> Bill:
        for b in self.bills.values():
            if b.package_info == package:
                return b
        raise KeyError("no bill with this package")

    async def confirm(self, out_bill_no: str | None = None, *, package: str | None = None, notify: bool = True,
                      times: int = 1) -> Bill:
        """The user confirms in the mini-program (`wx.requestMerchantTransfer`). A bill whose
        outcome is `overdue` ignores it (the user never confirms)."""
        b = self._by_package(package) if package else self.bills[out_bill_no or ""]
        if b.state != "WAIT_USER_CONFIRM" or b.behaviour.outcome == "overdue":
            return b
        self._finish(b, "SUCCESS")
        if notify:
            await self.notify(b.out_bill_no, times=times)
        return b

    async def lapse(self, out_bill_no: str, *, notify: bool = True, times: int = 1) -> Bill:
        """Nobody confirmed in time: the bill closes as FAIL / OVERDUE_CLOSE."""
        b = self.bills[out_bill_no]
        if b.state not in FINAL:
            self._finish(b, "FAIL", "OVERDUE_CLOSE")
        if notify:
            await self.notify(out_bill_no, times=times)
        return b

    async def fail(self, out_bill_no: str, reason: str = "PAYEE_ACCOUNT_ABNORMAL", *, notify: bool = True,
                   times: int = 1) -> Bill:
        b = self.bills[out_bill_no]
        if b.state not in FINAL:
            self._finish(b, "FAIL", reason)
        if notify:
            await self.notify(out_bill_no, times=times)
        return b

    async def cancel_bill(self, out_bill_no: str, *, notify: bool = True, times: int = 1) -> Bill:
        """The merchant cancels a bill the user has not confirmed (e.g. from the console)."""
        b = self.bills[out_bill_no]
        if b.state not in FINAL and b.state != "TRANSFERING":
            self._finish(b, "CANCELLED")
        if notify:
            await self.notify(out_bill_no, times=times)
        return b

    def _finish(self, b: Bill, state: str, fail_reason: str | None = None) -> None:
        b.state, b.fail_reason, b.update_time = state, fail_reason, _now_text()
        b.notice_id = str(uuid.uuid4())  # one notice per final state; WeChat's retries repeat its id

    # -- notices ---------------------------------------------------------------------------------
    def build_notice(self, out_bill_no: str, *, notice_id: str | None = None) -> tuple[dict[str, str], bytes]:
        """(headers, body) of the MCHTRANSFER.BILL.FINISHED notice of a final bill."""
        b = self.bills[out_bill_no]
        if b.state not in FINAL:
            raise ValueError(f"bill {out_bill_no} is not final ({b.state})")
        resource = {"out_bill_no": b.out_bill_no, "transfer_bill_no": b.transfer_bill_no, "state": b.state,
                    "mch_id": self.mchid, "transfer_amount": b.request["transfer_amount"], "openid": b.request["openid"],
                    "create_time": b.create_time, "update_time": b.update_time}
        if b.fail_reason:
            resource["fail_reason"] = b.fail_reason
        enc = encrypt_resource(self.apiv3_key.encode(), json.dumps(resource, ensure_ascii=False).encode(), "mch_payment")
        body = json.dumps({
            "id": notice_id or b.notice_id, "create_time": _now_text(), "resource_type": "encrypt-resource",
            "event_type": "MCHTRANSFER.BILL.FINISHED", "summary": "商家转账单据终态通知",
            "resource": {"original_type": "mch_payment", **enc},
        }, ensure_ascii=False).encode()
        return self._sign_headers(body), body

    async def notify(self, out_bill_no: str, *, times: int = 1, fresh_id: bool = False) -> list[Delivery]:
        """Send the bill's final notice `times` times (WeChat retries and duplicates), with the
        same notice id unless `fresh_id`."""
        b = self.bills[out_bill_no]
        out = []
        async with httpx.AsyncClient(transport=self.notice_transport, timeout=10) as client:
            for _ in range(times):
                headers, body = self.build_notice(out_bill_no, notice_id=str(uuid.uuid4()) if fresh_id else None)
                notice_id = json.loads(body)["id"]
                try:
                    r = await client.post(b.notify_url, content=body,
                                          headers={**headers, "Content-Type": "application/json"})
                    d = Delivery(notice_id, out_bill_no, b.state, b.notify_url, r.status_code)
                except httpx.HTTPError as exc:
                    d = Delivery(notice_id, out_bill_no, b.state, b.notify_url, None, f"{type(exc).__name__}: {exc}")
                self.deliveries.append(d)
                out.append(d)
        return out

    # -- the API ---------------------------------------------------------------------------------
    def _sign_headers(self, body: bytes) -> dict[str, str]:
        ts, nonce = str(int(time.time())), secrets.token_hex(16)
        return {"Wechatpay-Serial": self.platform_serial, "Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": sign(self.platform_key, notify_message(ts, nonce, body)),
                "Wechatpay-Signature-Type": SIGNATURE_TYPE}

    def _answer(self, status: int, payload: dict[str, Any]) -> Response:
        body = json.dumps(payload, ensure_ascii=False).encode()
        return Response(body, status_code=status, media_type="application/json",
                        headers={**self._sign_headers(body), "Request-ID": uuid.uuid4().hex})

    def _error(self, e: StandinError) -> Response:
        return self._answer(e.status, {"code": e.code, "message": e.message})

    def check_authorization(self, method: str, path_with_query: str, headers: Any, body: bytes) -> None:
        value = headers.get("authorization")
        if not value:
            raise StandinError(401, "SIGN_ERROR", "缺少Authorization")
        try:
            auth = parse_authorization(value)
        except ValueError:
            raise StandinError(401, "SIGN_ERROR", "Authorization 格式错误") from None
        key = self.merchant_keys.get(auth.get("serial_no", ""))
        if auth.get("mchid") != self.mchid or key is None:
            raise StandinError(401, "SIGN_ERROR", "商户号或证书序列号错误")
        ts, nonce, sig = auth.get("timestamp", ""), auth.get("nonce_str", ""), auth.get("signature", "")
        if not ts.isdigit() or abs(time.time() - int(ts)) >= FRESHNESS_S or not nonce:
            raise StandinError(401, "SIGN_ERROR", "时间戳或随机串错误")
        message = f"{method}\n{path_with_query}\n{ts}\n{nonce}\n".encode() + body + b"\n"
        if not verify(key, message, sig):
            raise StandinError(401, "SIGN_ERROR", "签名错误")

    def validate_create(self, body: dict[str, Any], serial_header: str | None) -> tuple[dict[str, Any], str | None]:
        """The create body as WeChat checks it; returns (body, decrypted user_name)."""
        def param(msg: str) -> StandinError:
            return StandinError(400, "PARAM_ERROR", msg)

        unknown = set(body) - CREATE_FIELDS
        if unknown:
            raise param(f"未知参数 {sorted(unknown)}")
        if body.get("appid") != self.appid:
            raise StandinError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        no = body.get("out_bill_no")
        if not isinstance(no, str) or not OUT_BILL_NO_RE.match(no):
            raise param("out_bill_no 格式错误: [0-9A-Za-z], 最长32位")
        scene = body.get("transfer_scene_id")
        if scene not in SCENE_REPORT_TYPES:
            raise param("transfer_scene_id 无效")
        openid = body.get("openid")
        if not isinstance(openid, str) or not 1 <= len(openid) <= 64:
            raise param("openid 无效")
        amount = body.get("transfer_amount")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise param("transfer_amount 必须为正整数(分)")
        if amount < MIN_TRANSFER_FEN:
            raise StandinError(400, "INVALID_REQUEST", "超过单笔转账上下限")
        remark = body.get("transfer_remark")
        if not isinstance(remark, str) or not 1 <= len(remark) <= 32:
            raise param("transfer_remark 必填, 最长32字")
        url = body.get("notify_url")
        if not isinstance(url, str) or not _good_notify_url(url):
            raise param("notify_url 必须为https地址, 不能携带参数")
        if body.get("user_recv_perception") not in SCENE_PERCEPTIONS[scene]:
            raise StandinError(400, "INVALID_REQUEST", "暂不支持展示当前传入的用户收款感知")
        infos = body.get("transfer_scene_report_infos")
        wanted = SCENE_REPORT_TYPES[scene]
        if not isinstance(infos, list) or len(infos) != len(wanted) or \
                sorted(str(i.get("info_type")) if isinstance(i, dict) else "" for i in infos) != sorted(wanted) or \
                any(set(i) != {"info_type", "info_content"} or not isinstance(i["info_content"], str)
                    or not 1 <= len(i["info_content"]) <= 32 for i in infos):
            raise param("需传入转账场景报备信息")
        name = None
        if "user_name" in body:
            if serial_header != self.platform_serial:
                raise param("user_name 加密需在请求头 Wechatpay-Serial 中传入微信支付公钥ID")
            try:
                name = oaep_decrypt(self.platform_key, str(body["user_name"]))
            except Exception:
                raise param("user_name 解密失败") from None
            if not name:
                raise param("user_name 不能为空")
        elif amount >= REAL_NAME_FEN:
            raise param("转账金额>=2000元时, 收款用户姓名必填")
        return body, name

    async def create(self, request: Request) -> Response:
        raw = await request.body()
        try:
            self.check_authorization("POST", _path(request), request.headers, raw)
            try:
                body = json.loads(raw)
            except ValueError:
                raise StandinError(400, "PARAM_ERROR", "请求体不是JSON") from None
            if not isinstance(body, dict):
                raise StandinError(400, "PARAM_ERROR", "请求体不是JSON对象")
            body, name = self.validate_create(body, request.headers.get("wechatpay-serial"))
        except StandinError as e:
            self.create_calls.append(CreateCall(None, e.status, e.code, None, time.time()))
            return self._error(e)
        no = body["out_bill_no"]
        fingerprint = _fingerprint(body, name)
        bill = self.bills.get(no)
        if bill is not None and bill.fingerprint != fingerprint:
            self.create_calls.append(CreateCall(no, 400, "PARAM_ERROR", body, time.time()))
            return self._error(StandinError(400, "PARAM_ERROR", "商户单号重复, 且请求参数与原单不一致"))
        if bill is None:
            bill = self._open(body, name, fingerprint)
        b = bill.behaviour
        if b.fault and bill.faults_done < b.fault_times:
            bill.faults_done += 1
            if b.fault == "error500":
                self.create_calls.append(CreateCall(no, 500, "SYSTEM_ERROR", body, time.time()))
                return self._error(StandinError(500, "SYSTEM_ERROR", "系统错误"))
            self.create_calls.append(CreateCall(no, 200, "SLOW", body, time.time()))
            await asyncio.sleep(b.slow_s)  # the client gives up first; the bill exists anyway
        else:
            self.create_calls.append(CreateCall(no, 200, None, body, time.time()))
        answer = {"out_bill_no": no, "transfer_bill_no": bill.transfer_bill_no, "create_time": bill.create_time,
                  "state": bill.state}
        if bill.state == "WAIT_USER_CONFIRM" and bill.package_info:
            answer["package_info"] = bill.package_info
        if bill.fail_reason:
            answer["fail_reason"] = bill.fail_reason
        return self._answer(200, answer)

    def _open(self, body: dict[str, Any], name: str | None, fingerprint: str) -> Bill:
        no = body["out_bill_no"]
        behaviour = self.behaviours.get(no) or self.behaviours.get(body["openid"]) or self.default_behaviour
        now = _now_text()
        bill = Bill(out_bill_no=no, transfer_bill_no="1330" + "".join(secrets.choice("0123456789") for _ in range(36)),
                    fingerprint=fingerprint, request=dict(body), user_name=name, notify_url=body["notify_url"],
                    behaviour=behaviour, create_time=now, update_time=now)
        if behaviour.outcome == "fail":
            bill.state = "ACCEPTED"
            self._later(behaviour.fail_after_s, lambda: self.fail(no, behaviour.fail_reason))
        else:
            bill.state = "WAIT_USER_CONFIRM"
            bill.package_info = base64.b64encode(b"standin:" + no.encode() + b":" + secrets.token_bytes(24)).decode()
        self.bills[no] = bill
        return bill

    def _later(self, delay: float, make: Any) -> None:
        async def run() -> None:
            await asyncio.sleep(delay)
            await make()

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def query(self, request: Request, out_bill_no: str) -> Response:
        try:
            self.check_authorization("GET", _path(request), request.headers, b"")
        except StandinError as e:
            return self._error(e)
        self.query_calls.append(out_bill_no)
        bill = self.bills.get(out_bill_no)
        if bill is None:
            return self._error(StandinError(404, "NOT_FOUND", "记录不存在"))
        return self._answer(200, bill.view(self.mchid))

    async def cancel(self, request: Request, out_bill_no: str) -> Response:
        raw = await request.body()
        try:
            self.check_authorization("POST", _path(request), request.headers, raw)
        except StandinError as e:
            return self._error(e)
        bill = self.bills.get(out_bill_no)
        if bill is None:
            return self._error(StandinError(404, "NOT_FOUND", "记录不存在"))
        if bill.state in FINAL or bill.state == "TRANSFERING":
            return self._error(StandinError(400, "INVALID_REQUEST", "单据状态不允许撤销"))
        self._finish(bill, "CANCELLED")
        self._later(0.01, lambda: self.notify(out_bill_no))
        return self._answer(200, {"out_bill_no": out_bill_no, "transfer_bill_no": bill.transfer_bill_no,
                                  "state": "CANCELING", "update_time": bill.update_time})

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _path(request: Request) -> str:
    q = request.url.query
    return request.url.path + (f"?{q}" if q else "")


def _good_notify_url(url: str) -> bool:
    if len(url) > 256:
        return False
    parts = urlsplit(url)
    if parts.query or parts.fragment or not parts.hostname:
        return False
    # https as WeChat requires; plain http only for a loopback service (local runs)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))


def _fingerprint(body: dict[str, Any], name: str | None) -> str:
    # the ciphertext of user_name differs on every encryption: compare the name itself
    same = {k: v for k, v in body.items() if k != "user_name"}
    return hashlib.sha256(json.dumps([same, name], sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# -- routers -------------------------------------------------------------------------------------
class _ConfirmBody(BaseModel):
    out_bill_no: str | None = None
    package: str | None = None
    times: int = 1


class _BehaviourBody(BaseModel):
    key: str | None = None
    outcome: Outcome = "success"
    fail_reason: str = "PAYEE_ACCOUNT_ABNORMAL"
    fault: Fault | None = None
    fault_times: int = 1
    slow_s: float = 5.0


class _NotifyBody(BaseModel):
    times: int = 1
    fresh_id: bool = False


def make_router(s: TransferStandin) -> APIRouter:
    """WeChat's transfer endpoints plus `/_standin/transfer/...` controls for the demo."""
    r = APIRouter()

    @r.post(CREATE_PATH, tags=["wechat transfer"])
    async def create_bill(request: Request) -> Response:
        return await s.create(request)

    @r.get(QUERY_PREFIX + "{out_bill_no}", tags=["wechat transfer"])
    async def query_bill(request: Request, out_bill_no: str) -> Response:
        return await s.query(request, out_bill_no)

    @r.post(QUERY_PREFIX + "{out_bill_no}/cancel", tags=["wechat transfer"])
    async def cancel_bill(request: Request, out_bill_no: str) -> Response:
        return await s.cancel(request, out_bill_no)

    def _view(b: Bill) -> dict[str, Any]:
        return {**b.view(s.mchid), "package_info": b.package_info, "outcome": b.behaviour.outcome}

    @r.post("/_standin/transfer/confirm", tags=["stand-in controls"])
    async def confirm(body: _ConfirmBody) -> dict[str, Any]:
        """Play the user confirming in the mini-program: by `package` (package_info) or out_bill_no."""
        return _view(await s.confirm(body.out_bill_no, package=body.package, times=body.times))

    @r.post("/_standin/transfer/bills/{out_bill_no}/lapse", tags=["stand-in controls"])
    async def lapse(out_bill_no: str, body: _NotifyBody | None = None) -> dict[str, Any]:
        """Nobody confirmed: close the bill as FAIL / OVERDUE_CLOSE and notify."""
        return _view(await s.lapse(out_bill_no, times=(body or _NotifyBody()).times))

    @r.post("/_standin/transfer/bills/{out_bill_no}/cancel", tags=["stand-in controls"])
    async def cancel(out_bill_no: str) -> dict[str, Any]:
        return _view(await s.cancel_bill(out_bill_no))

    @r.post("/_standin/transfer/bills/{out_bill_no}/fail", tags=["stand-in controls"])
    async def fail(out_bill_no: str, reason: str = "PAYEE_ACCOUNT_ABNORMAL") -> dict[str, Any]:
        return _view(await s.fail(out_bill_no, reason))

    @r.post("/_standin/transfer/bills/{out_bill_no}/notify", tags=["stand-in controls"])
    async def renotify(out_bill_no: str, body: _NotifyBody | None = None) -> list[dict[str, Any]]:
        b = body or _NotifyBody()
        return [d.__dict__ for d in await s.notify(out_bill_no, times=b.times, fresh_id=b.fresh_id)]

    @r.post("/_standin/transfer/behaviour", tags=["stand-in controls"])
    async def behave(body: _BehaviourBody) -> dict[str, Any]:
        """Outcome/faults for the bills of one openid or out_bill_no (`key`), or the default."""
        b = s.behave(body.key, outcome=body.outcome, fail_reason=body.fail_reason, fault=body.fault,
                     fault_times=body.fault_times, slow_s=body.slow_s)
        return b.__dict__

    @r.get("/_standin/transfer/bills", tags=["stand-in controls"])
    async def bills(openid: str | None = None) -> list[dict[str, Any]]:
        return [_view(b) for b in s.bills.values() if openid is None or b.request["openid"] == openid]

    @r.get("/_standin/transfer/calls", tags=["stand-in controls"])
    async def calls() -> list[dict[str, Any]]:
        return [{"out_bill_no": c.out_bill_no, "status": c.status, "code": c.code, "at": c.at} for c in s.create_calls]

    return r


def app_for(s: TransferStandin) -> FastAPI:
    app = FastAPI(title="WeChat Pay merchant transfer (stand-in)")
    app.include_router(make_router(s))
    return app


# -- dev keys (demo) -------------------------------------------------------------------------------
@dataclass(frozen=True)
class DevKeys:
    directory: Path
    merchant_private_pem: str
    merchant_public_pem: str
    platform_private_pem: str
    platform_public_pem: str

    def payout_env(self) -> dict[str, str]:
        """What the payout service needs to talk to this stand-in."""
        return {
            "PAYOUT_WECHAT_MCHID": DEV_MCHID, "PAYOUT_WECHAT_APPID": DEV_APPID,
            "PAYOUT_WECHAT_MERCHANT_SERIAL": DEV_MERCHANT_SERIAL,
            "PAYOUT_WECHAT_MERCHANT_KEY": str(self.directory / "merchant_private.pem"),
            "PAYOUT_WECHAT_PLATFORM_SERIAL": DEV_PLATFORM_SERIAL,
            "PAYOUT_WECHAT_PLATFORM_KEY": str(self.directory / "platform_public.pem"),
            "PAYOUT_WECHAT_APIV3_KEY": DEV_APIV3_KEY,
        }


def dev_keys(directory: str | Path) -> DevKeys:
    """Read the demo's merchant and platform keys from `directory`, writing new ones if absent."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    pems: dict[str, str] = {}
    for who in ("merchant", "platform"):
        priv_path, pub_path = d / f"{who}_private.pem", d / f"{who}_public.pem"
        if not priv_path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            priv_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
            os.chmod(priv_path, 0o600)
            pub_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
        pems[f"{who}_private"], pems[f"{who}_public"] = priv_path.read_text(), pub_path.read_text()
    return DevKeys(d, pems["merchant_private"], pems["merchant_public"], pems["platform_private"], pems["platform_public"])


def from_dev_keys(keys: DevKeys, **kw: Any) -> TransferStandin:
    return TransferStandin(
        mchid=DEV_MCHID, appid=DEV_APPID,
        merchant_keys={DEV_MERCHANT_SERIAL: serialization.load_pem_public_key(keys.merchant_public_pem.encode())},  # type: ignore[dict-item]
        platform_key=serialization.load_pem_private_key(keys.platform_private_pem.encode(), password=None),  # type: ignore[arg-type]
        platform_serial=DEV_PLATFORM_SERIAL, apiv3_key=DEV_APIV3_KEY, **kw)


_default: tuple[TransferStandin, APIRouter] | None = None


def __getattr__(name: str) -> Any:
    """`state` and `router` for the assembled stand-in app, built on first use from the dev
    keys in $WECHAT_STANDIN_KEYS (default `.local/wechat`)."""
    global _default
    if name in ("state", "router"):
        if _default is None:
            s = from_dev_keys(dev_keys(os.environ.get("WECHAT_STANDIN_KEYS", ".local/wechat")))
            _default = (s, make_router(s))
        return _default[0] if name == "state" else _default[1]
    raise AttributeError(name)


def main() -> None:  # pragma: no cover - a manual/demo entry point
    import argparse

    import uvicorn

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", default=os.environ.get("WECHAT_STANDIN_KEYS", ".local/wechat"))
    ap.add_argument("--port", type=int, default=8199)
    args = ap.parse_args()
    keys = dev_keys(args.keys)
    for k, v in keys.payout_env().items():
        print(f"export {k}={v}")
    uvicorn.run(app_for(from_dev_keys(keys)), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    main()
