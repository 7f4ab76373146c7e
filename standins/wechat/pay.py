"""Stand-in for WeChat Pay's side of payments and refunds (APIv3), for tests and the demo.

It holds what WeChat holds: platform RSA keys (a certificate-mode key with a hex serial and,
for the switch of modes, public-key-mode keys `PUB_KEY_ID_...`) and the merchant's APIv3 key.
It builds notices exactly as WeChat documents them (wechat.md §1: body
`{id, create_time, event_type, resource_type, summary, resource{...}}`, resource encrypted with
AEAD_AES_256_GCM under the APIv3 key, `Wechatpay-*` headers signing `ts\\nnonce\\nbody\\n`)
and delivers them over HTTP to a notify URL, as WeChat does, plus the bad variants WeChat
(or an attacker) may send: forged, stale, probe (`WECHATPAY/SIGNTEST/...`), tampered.

    pay = WeChatPayStandin(mchid="1900000109", appid="wx8888888888888888")
    settings = OrdersSettings(**pay.notifier_settings())          # what orders must know
    await pay.deliver_payment(notify_url, out_trade_no, amount_fen)  # "the buyer paid"
    await pay.deliver_refund(notify_url, out_trade_no, out_refund_no, refund_fen, total_fen)

`router` (built by `make_router`) serves the query endpoints merchants call
(`GET /v3/certificates`, `GET /v3/pay/transactions/out-trade-no/{no}`,
`GET /v3/refund/domestic/refunds/{out_refund_no}`), checking the merchant's `Authorization`
and signing the answers with the active platform key."""
from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from shared.wechatpay import encrypt_resource, notify_message, sign
from shared.wechatpay.crypto import SIGNATURE_TYPE, parse_authorization, verify

CST = timezone(timedelta(hours=8))  # WeChat's times are RFC 3339 in +08:00
KeyMode = Literal["certificate", "public_key"]


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class PlatformKey:
    """One WeChat Pay platform key: `pem` is what the merchant configures (the platform
    certificate in certificate mode, the WeChat Pay public key in public-key mode)."""

    serial: str
    mode: KeyMode
    private_key: rsa.RSAPrivateKey
    pem: str


@dataclass(frozen=True)
class Notice:
    """A notice ready to send: exact body bytes and the headers signing them."""

    notice_id: str
    event_type: str
    headers: dict[str, str]
    body: bytes
    resource: dict[str, Any]


@dataclass(frozen=True)
class Delivery:
    url: str
    notice_id: str
    event_type: str
    status: int
    body: str


@dataclass
class WeChatPayStandin:
    mchid: str = "1900000109"
    appid: str = "wx8888888888888888"
    apiv3_key: str = field(default_factory=lambda: secrets.token_hex(16))  # 32 ASCII chars, as WeChat's
    mode: KeyMode = "certificate"
    keys: dict[str, PlatformKey] = field(default_factory=dict)
    active_serial: str = ""
    #: every payment / refund notice built, by out_trade_no / out_refund_no (what WeChat would answer to a query)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    #: merchant API keys the query endpoints accept: serial_no -> public key
    merchant_keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.apiv3_key.encode()) != 32:
            raise ValueError("the APIv3 key is 32 bytes")
        if not self.keys:
            self.active_serial = self.add_platform_key(self.mode).serial

    # -- keys ------------------------------------------------------------------------------------
    def add_platform_key(self, mode: KeyMode = "certificate") -> PlatformKey:
        """A new platform key (not yet active): certificate mode gets a self-signed platform
        certificate and its hex serial; public-key mode a `PUB_KEY_ID_...` id and a bare key."""
        key = _rsa()
        if mode == "certificate":
            serial_no = x509.random_serial_number()
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (stand-in)")])
            now = datetime.now(timezone.utc)
            cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                    .serial_number(serial_no).not_valid_before(now - timedelta(days=1))
                    .not_valid_after(now + timedelta(days=5 * 365)).sign(key, hashes.SHA256()))
            pk = PlatformKey(format(serial_no, "X"), mode, key, cert.public_bytes(serialization.Encoding.PEM).decode())
        else:
            pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            pk = PlatformKey("PUB_KEY_ID_" + "".join(secrets.choice("0123456789") for _ in range(28)), mode, key, pem)
        self.keys[pk.serial] = pk
        return pk

    def switch_to(self, serial: str) -> None:
        """Sign from now on with this key (WeChat's gray-scale switch moves notices over)."""
        if serial not in self.keys:
            raise KeyError(serial)
        self.active_serial = serial

    @property
    def active_key(self) -> PlatformKey:
        return self.keys[self.active_serial]

    def notifier_settings(self) -> dict[str, Any]:
        """What the orders service must be configured with (OrdersSettings field names)."""
        return {
            "wechatpay_mchid": self.mchid,
            "wechatpay_appid": self.appid,
            "wechatpay_apiv3_key": self.apiv3_key,
            "wechatpay_platform_keys": {s: k.pem for s, k in self.keys.items()},
        }

    def env(self) -> dict[str, str]:
        """The same as ORDERS_* environment variables (for a service run as a process)."""
        s = self.notifier_settings()
        return {
            "ORDERS_WECHATPAY_MCHID": s["wechatpay_mchid"],
            "ORDERS_WECHATPAY_APPID": s["wechatpay_appid"],
            "ORDERS_WECHATPAY_APIV3_KEY": s["wechatpay_apiv3_key"],
            "ORDERS_WECHATPAY_PLATFORM_KEYS": json.dumps(s["wechatpay_platform_keys"]),
        }

    def save(self, path: str) -> None:
        """Write merchant ids and keys to a JSON file (0600), so another process (the demo's
        stand-in server, a service's environment) can play the same WeChat Pay."""
        import os

        data = {"mchid": self.mchid, "appid": self.appid, "apiv3_key": self.apiv3_key, "mode": self.mode,
                "active_serial": self.active_serial,
                "keys": [{"serial": k.serial, "mode": k.mode, "pem": k.pem,
                          "private_pem": k.private_key.private_bytes(
                              serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode()} for k in self.keys.values()]}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)

    @classmethod
    def load(cls, path: str) -> "WeChatPayStandin":
        with open(path) as f:
            data = json.load(f)
        keys = {k["serial"]: PlatformKey(k["serial"], k["mode"],
                                         serialization.load_pem_private_key(k["private_pem"].encode(), None),  # type: ignore[arg-type]
                                         k["pem"]) for k in data["keys"]}
        return cls(mchid=data["mchid"], appid=data["appid"], apiv3_key=data["apiv3_key"], mode=data["mode"], keys=keys,
                   active_serial=data["active_serial"])

    # -- resources -------------------------------------------------------------------------------
    def payment_resource(self, out_trade_no: str, amount_fen: int, *, transaction_id: str | None = None,
                         trade_state: str = "SUCCESS", payer_total_fen: int | None = None, openid: str | None = None,
                         success_time: datetime | None = None, mchid: str | None = None, appid: str | None = None,
                         attach: str = "") -> dict[str, Any]:
        """The decrypted TRANSACTION.SUCCESS resource (wechat.md §1, decrypted payment fields)."""
        prior = self.transactions.get(out_trade_no, {})
        res = {
            "appid": appid or self.appid,
            "mchid": mchid or self.mchid,
            "out_trade_no": out_trade_no,
            "transaction_id": transaction_id or prior.get("transaction_id") or "4200" + secrets.token_hex(12)[:24],
            "trade_type": "JSAPI",
            "trade_state": trade_state,
            "trade_state_desc": "支付成功" if trade_state == "SUCCESS" else trade_state,
            "bank_type": "OTHERS",
            "attach": attach,
            "success_time": (success_time or datetime.now(CST)).astimezone(CST).isoformat(timespec="seconds"),
            "payer": {"openid": openid or "oStandin" + secrets.token_hex(10)},
            "amount": {"total": amount_fen, "payer_total": amount_fen if payer_total_fen is None else payer_total_fen,
                       "currency": "CNY", "payer_currency": "CNY"},
        }
        if trade_state == "SUCCESS" and (mchid or self.mchid) == self.mchid:
            self.transactions.setdefault(out_trade_no, res)
        return res

    def refund_resource(self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, *,
                        status: Literal["SUCCESS", "CLOSED", "ABNORMAL"] = "SUCCESS", refund_id: str | None = None,
                        success_time: datetime | None = None, mchid: str | None = None) -> dict[str, Any]:
        """The decrypted REFUND.* resource (wechat.md §1, decrypted refund fields)."""
        prior = self.refunds.get(out_refund_no, {})
        res: dict[str, Any] = {
            "mchid": mchid or self.mchid,
            "out_trade_no": out_trade_no,
            "transaction_id": self.transactions.get(out_trade_no, {}).get("transaction_id") or "4200" + secrets.token_hex(12)[:24],
            "out_refund_no": out_refund_no,
            "refund_id": refund_id or prior.get("refund_id") or "5030" + secrets.token_hex(12)[:24],
            "refund_status": status,
            "user_received_account": "支付用户零钱",
            "amount": {"total": total_fen, "refund": refund_fen, "payer_total": total_fen, "payer_refund": refund_fen},
        }
        if status == "SUCCESS":
            res["success_time"] = (success_time or datetime.now(CST)).astimezone(CST).isoformat(timespec="seconds")
        self.refunds[out_refund_no] = res
        return res

    # -- notices ---------------------------------------------------------------------------------
    def notice(self, event_type: str, resource: dict[str, Any], *, notice_id: str | None = None,
               serial: str | None = None, timestamp: int | None = None, nonce: str | None = None,
               forge: bool = False, probe: bool = False, tamper: bool = False,
               associated_data: str | None = None) -> Notice:
        """Build a signed, encrypted notice. Variants: `forge` signs with a key WeChat does not
        hold (under a known serial); `probe` sends WeChat's probe signature
        (`WECHATPAY/SIGNTEST/...`); `tamper` changes the body after signing; an old
        `timestamp` makes it stale; `serial` picks which platform key signs."""
        refund = event_type.startswith("REFUND.")
        original = "refund" if refund else "transaction"
        ad = original if associated_data is None else associated_data
        summary = {"TRANSACTION.SUCCESS": "支付成功", "REFUND.SUCCESS": "退款成功", "REFUND.ABNORMAL": "退款异常",
                   "REFUND.CLOSED": "退款关闭"}.get(event_type, event_type)
        enc = encrypt_resource(self.apiv3_key.encode(), json.dumps(resource, ensure_ascii=False).encode(), ad)
        nid = notice_id or str(uuid.uuid4())
        envelope = {
            "id": nid,
            "create_time": datetime.now(CST).isoformat(timespec="seconds"),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {"original_type": original, "algorithm": enc["algorithm"], "ciphertext": enc["ciphertext"],
                         "associated_data": enc["associated_data"], "nonce": enc["nonce"]},
        }
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        key = self.keys[serial or self.active_serial]
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(16).upper()
        if probe:
            signature = "WECHATPAY/SIGNTEST/" + base64.b64encode(secrets.token_bytes(96)).decode()
        else:
            signer = _rsa() if forge else key.private_key
            signature = sign(signer, notify_message(ts, nonce, body))
        if tamper:
            body = body.replace(b'"summary":"', b'"summary":"x', 1)
        headers = {
            "Content-Type": "application/json",
            "Wechatpay-Serial": key.serial,
            "Wechatpay-Signature": signature,
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
            "User-Agent": "Mozilla/4.0 (WeChatPay stand-in)",
            "Request-ID": secrets.token_hex(16),
        }
        return Notice(nid, event_type, headers, body, resource)

    def payment_notice(self, out_trade_no: str, amount_fen: int, *, notice: dict[str, Any] | None = None,
                       **resource_kw: Any) -> Notice:
        """TRANSACTION.SUCCESS for an order; `notice` passes variants to `notice()`."""
        return self.notice("TRANSACTION.SUCCESS", self.payment_resource(out_trade_no, amount_fen, **resource_kw),
                           **(notice or {}))

    def refund_notice(self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, *,
                      status: Literal["SUCCESS", "CLOSED", "ABNORMAL"] = "SUCCESS",
                      notice: dict[str, Any] | None = None, **resource_kw: Any) -> Notice:
        """REFUND.SUCCESS / REFUND.CLOSED / REFUND.ABNORMAL for a requested refund."""
        res = self.refund_resource(out_trade_no, out_refund_no, refund_fen, total_fen, status=status, **resource_kw)
        return self.notice(f"REFUND.{status}", res, **(notice or {}))

    # -- delivery --------------------------------------------------------------------------------
    async def deliver(self, notify_url: str, notice: Notice, *, client: httpx.AsyncClient | None = None) -> httpx.Response:
        """POST the notice as WeChat does (raw body, `Wechatpay-*` headers); returns the answer.
        WeChat counts 200/204 as received and retries anything else."""
        if client is None:
            async with httpx.AsyncClient(timeout=5.0) as own:
                resp = await own.post(notify_url, content=notice.body, headers=notice.headers)
        else:
            resp = await client.post(notify_url, content=notice.body, headers=notice.headers)
        self.deliveries.append(Delivery(notify_url, notice.notice_id, notice.event_type, resp.status_code, resp.text))
        return resp

    async def deliver_payment(self, notify_url: str, out_trade_no: str, amount_fen: int, *,
                              client: httpx.AsyncClient | None = None, notice: dict[str, Any] | None = None,
                              **resource_kw: Any) -> httpx.Response:
        """The buyer paid `amount_fen` for `out_trade_no`: deliver TRANSACTION.SUCCESS."""
        return await self.deliver(notify_url, self.payment_notice(out_trade_no, amount_fen, notice=notice, **resource_kw),
                                  client=client)

    async def deliver_refund(self, notify_url: str, out_trade_no: str, out_refund_no: str, refund_fen: int,
                             total_fen: int, *, status: Literal["SUCCESS", "CLOSED", "ABNORMAL"] = "SUCCESS",
                             client: httpx.AsyncClient | None = None, notice: dict[str, Any] | None = None,
                             **resource_kw: Any) -> httpx.Response:
        """WeChat finished (or failed) refund `out_refund_no`: deliver REFUND.<status>."""
        n = self.refund_notice(out_trade_no, out_refund_no, refund_fen, total_fen, status=status, notice=notice,
                               **resource_kw)
        return await self.deliver(notify_url, n, client=client)

    # -- merchant API side -----------------------------------------------------------------------
    def register_merchant_key(self, serial_no: str, public_key: rsa.RSAPublicKey) -> None:
        """Accept merchant requests signed with this API certificate key."""
        self.merchant_keys[serial_no] = public_key

    def check_authorization(self, method: str, path_with_query: str, body: bytes, header: str | None) -> str | None:
        """None if the merchant's `Authorization` is valid, else WeChat's error code."""
        if not header:
            return "SIGN_ERROR"
        try:
            auth = parse_authorization(header)
        except ValueError:
            return "SIGN_ERROR"
        key = self.merchant_keys.get(auth.get("serial_no", ""))
        if key is None or auth.get("mchid") != self.mchid:
            return "SIGN_ERROR"
        ts = auth.get("timestamp", "")
        if not ts.isdigit() or abs(time.time() - int(ts)) >= 300:
            return "SIGN_ERROR"
        msg = f"{method.upper()}\n{path_with_query}\n{ts}\n{auth.get('nonce_str', '')}\n".encode() + body + b"\n"
        return None if verify(key, msg, auth.get("signature", "")) else "SIGN_ERROR"

    def signed_headers(self, body: bytes) -> dict[str, str]:
        """Headers WeChat puts on its API answers (merchants verify them like notices)."""
        ts, nonce = str(int(time.time())), secrets.token_hex(16).upper()
        return {"Wechatpay-Serial": self.active_serial, "Wechatpay-Timestamp": ts, "Wechatpay-Nonce": nonce,
                "Wechatpay-Signature": sign(self.active_key.private_key, notify_message(ts, nonce, body)),
                "Wechatpay-Signature-Type": SIGNATURE_TYPE, "Request-ID": secrets.token_hex(16)}


class PaymentControl(BaseModel):
    notify_url: str
    out_trade_no: str
    amount_fen: int


class RefundControl(BaseModel):
    notify_url: str
    out_trade_no: str
    out_refund_no: str
    refund_fen: int
    total_fen: int
    status: Literal["SUCCESS", "CLOSED", "ABNORMAL"] = "SUCCESS"


def make_router(pay: WeChatPayStandin) -> APIRouter:
    """WeChat Pay's query endpoints over what the stand-in has paid and refunded."""
    router = APIRouter(tags=["wechat-pay-standin"])

    def answer(status: int, payload: dict[str, Any]) -> Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        return Response(body, status_code=status, media_type="application/json", headers=pay.signed_headers(body))

    async def authorized(request: Request) -> Response | None:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        err = pay.check_authorization(request.method, path, await request.body(), request.headers.get("Authorization"))
        if err:
            return answer(401, {"code": err, "message": "签名错误"})
        return None

    @router.get("/v3/certificates")
    async def certificates(request: Request) -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        data = []
        for k in pay.keys.values():
            if k.mode != "certificate":
                continue
            enc = encrypt_resource(pay.apiv3_key.encode(), k.pem.encode(), "certificate")
            data.append({"serial_no": k.serial, "effective_time": datetime.now(CST).isoformat(timespec="seconds"),
                         "expire_time": (datetime.now(CST) + timedelta(days=5 * 365)).isoformat(timespec="seconds"),
                         "encrypt_certificate": enc})
        if not data:  # public-key-only merchants: WeChat answers 500 here
            return answer(500, {"code": "SYSTEM_ERROR", "message": "系统错误"})
        return answer(200, {"data": data})

    @router.get("/v3/pay/transactions/out-trade-no/{out_trade_no}")
    async def query_transaction(out_trade_no: str, request: Request, mchid: str = "") -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        if mchid != pay.mchid:
            return answer(400, {"code": "PARAM_ERROR", "message": "mchid与订单不匹配"})
        tx = pay.transactions.get(out_trade_no)
        if tx is None:
            return answer(404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
        return answer(200, tx)

    @router.get("/v3/refund/domestic/refunds/{out_refund_no}")
    async def query_refund(out_refund_no: str, request: Request) -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        r = pay.refunds.get(out_refund_no)
        if r is None:
            return answer(404, {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"})
        return answer(200, {**r, "status": r["refund_status"]})

    # -- controls for the demo: "the buyer paid" / "WeChat finished the refund", delivered from here
    @router.post("/_standin/pay/payments", include_in_schema=False)
    async def control_payment(body: PaymentControl) -> dict[str, Any]:
        r = await pay.deliver_payment(body.notify_url, body.out_trade_no, body.amount_fen)
        return {"status": r.status_code, "body": r.text,
                "transaction_id": pay.transactions.get(body.out_trade_no, {}).get("transaction_id")}

    @router.post("/_standin/pay/refunds", include_in_schema=False)
    async def control_refund(body: RefundControl) -> dict[str, Any]:
        r = await pay.deliver_refund(body.notify_url, body.out_trade_no, body.out_refund_no, body.refund_fen,
                                     body.total_fen, status=body.status)
        return {"status": r.status_code, "body": r.text}

    return router


#: the stand-in the assembled `standins/wechat/app.py` serves; tests usually build their own
state = WeChatPayStandin()
router = make_router(state)
