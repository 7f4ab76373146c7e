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

import asyncio
import base64
import csv
import gzip
import hashlib
import io
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

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


class PayError(Exception):
    """What WeChat answers a merchant call it refuses: HTTP status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Trade:
    """A JSAPI order as WeChat holds it after the prepay."""

    out_trade_no: str
    request: dict[str, Any]
    fingerprint: str
    prepay_id: str
    prepay_expires: float
    time_expire: datetime
    state: str = "NOTPAY"   # NOTPAY -> SUCCESS | CLOSED
    prepay_calls: int = 1


@dataclass
class RefundBehaviour:
    """What happens to a refund submitted through the API: the status the create answers
    (`PROCESSING` usually), the final status (`SUCCESS`/`CLOSED`/`ABNORMAL`, or None: it stays
    PROCESSING until `finish_refund`), and faults on the create (`slow`: the refund exists
    but the answer comes after `slow_s`; `error500`: it exists but the answer is a 500)."""

    answer: str = "PROCESSING"
    final: str | None = "SUCCESS"
    notify: bool = True
    fault: Literal["slow", "error500"] | None = None
    fault_times: int = 1
    slow_s: float = 5.0
    finish_after_s: float = 0.05
    #: refuse the create outright with this code (e.g. "INVALID_REQUEST"): no refund exists
    refuse: str | None = None


@dataclass
class RefundOrder:
    out_refund_no: str
    request: dict[str, Any]
    fingerprint: str
    behaviour: RefundBehaviour
    submissions: int = 1
    faults_done: int = 0


OUT_TRADE_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")
OUT_REFUND_NO_RE = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
JSAPI_FIELDS = {"appid", "mchid", "description", "out_trade_no", "time_expire", "attach", "notify_url", "goods_tag",
                "support_fapiao", "amount", "payer", "detail", "scene_info", "settle_info"}
REFUND_FIELDS = {"transaction_id", "out_trade_no", "out_refund_no", "reason", "notify_url", "funds_account", "amount",
                 "goods_detail"}
PREPAY_VALID_S = 2 * 3600


def _fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _check_notify_url(url: Any) -> None:
    # WeChat wants https without a query string; the stand-in also takes http (loopback tests, the demo)
    parts = urlsplit(url) if isinstance(url, str) else None
    if not parts or parts.scheme not in ("https", "http") or not parts.netloc or parts.query or len(url) > 256:
        raise PayError(400, "PARAM_ERROR", "notify_url 格式错误")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    #: the demo's merchant API key (generated by `ensure_merchant_key`, saved with the rest)
    merchant_serial: str = ""
    merchant_private_pem: str = ""
    #: JSAPI orders WeChat holds (prepay), by out_trade_no
    trades: dict[str, "Trade"] = field(default_factory=dict)
    #: refunds submitted through the API, by out_refund_no (request, behaviour, submissions)
    refund_orders: dict[str, "RefundOrder"] = field(default_factory=dict)
    refund_behaviour: "RefundBehaviour" = field(default_factory=lambda: RefundBehaviour())
    refund_behaviours: dict[str, "RefundBehaviour"] = field(default_factory=dict)
    #: out_trade_no whose next close "races" a payment: the buyer pays just before the close lands
    close_races: set[str] = field(default_factory=set)
    #: every API call the merchant made: (method, path, status, code)
    calls: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    #: bill downloads served by token (gzip bytes, hash of the uncompressed bill)
    bill_files: dict[str, bytes] = field(default_factory=dict)
    #: corrupt bill downloads (the hash no longer matches): to test the merchant's check
    corrupt_bills: bool = False
    #: seconds between attempts when a payment notice is not acknowledged (refused, or the merchant
    #: unreachable): WeChat's documented 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h
    #: (24h4m in all); a demo or test may compress it
    notify_retry_s: tuple[float, ...] = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800,
                                         21600, 21600)
    _tasks: set[Any] = field(default_factory=set)

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
                "active_serial": self.active_serial, "merchant_serial": self.merchant_serial,
                "merchant_private_pem": self.merchant_private_pem,
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
        out = cls(mchid=data["mchid"], appid=data["appid"], apiv3_key=data["apiv3_key"], mode=data["mode"], keys=keys,
                  active_serial=data["active_serial"])
        if data.get("merchant_private_pem"):
            out.merchant_serial, out.merchant_private_pem = data["merchant_serial"], data["merchant_private_pem"]
            out.register_merchant_key(out.merchant_serial, out.merchant_private_key().public_key())
        return out

    def ensure_merchant_key(self) -> str:
        """Generate (once) a merchant API key and accept requests signed with it; returns its serial."""
        if not self.merchant_private_pem:
            key = _rsa()
            self.merchant_serial = secrets.token_hex(20).upper()
            self.merchant_private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()).decode()
        self.register_merchant_key(self.merchant_serial, self.merchant_private_key().public_key())
        return self.merchant_serial

    def merchant_private_key(self) -> rsa.RSAPrivateKey:
        return serialization.load_pem_private_key(self.merchant_private_pem.encode(), None)  # type: ignore[return-value]

    def client_env(self, base_url: str, notify_url: str) -> dict[str, str]:
        """ORDERS_* settings for the outgoing calls (prepay, close, query, refunds, bills) to
        this stand-in served at `base_url`, with the merchant key of `ensure_merchant_key`."""
        self.ensure_merchant_key()
        return {"ORDERS_WECHATPAY_BASE_URL": base_url, "ORDERS_WECHATPAY_MERCHANT_SERIAL": self.merchant_serial,
                "ORDERS_WECHATPAY_MERCHANT_KEY": self.merchant_private_pem, "ORDERS_WECHATPAY_NOTIFY_URL": notify_url}

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


    # -- merchant API: JSAPI prepay, close, query, refunds, bills ------------------------------
    def jsapi(self, body: Any) -> dict[str, Any]:
        """`POST /v3/pay/transactions/jsapi`: checks the documented fields; idempotent on
        out_trade_no (the same request gets the same prepay_id while it is valid)."""
        if not isinstance(body, dict) or set(body) - JSAPI_FIELDS:
            raise PayError(400, "PARAM_ERROR", "请求参数错误")
        if body.get("appid") != self.appid or body.get("mchid") != self.mchid:
            raise PayError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        desc, no, attach = body.get("description"), body.get("out_trade_no"), body.get("attach", "")
        if not isinstance(desc, str) or not 0 < len(desc) <= 127:
            raise PayError(400, "PARAM_ERROR", "description 长度错误")
        if not isinstance(no, str) or not OUT_TRADE_NO_RE.match(no):
            raise PayError(400, "PARAM_ERROR", "out_trade_no 格式错误")
        if not isinstance(attach, str) or len(attach) > 128:
            raise PayError(400, "PARAM_ERROR", "attach 长度错误")
        _check_notify_url(body.get("notify_url"))
        amount, payer = body.get("amount"), body.get("payer")
        if not isinstance(amount, dict) or not _int(amount.get("total")) or amount["total"] < 1 \
                or amount.get("currency", "CNY") != "CNY":
            raise PayError(400, "PARAM_ERROR", "amount 错误")
        if not isinstance(payer, dict) or not isinstance(payer.get("openid"), str) or not payer["openid"]:
            raise PayError(400, "PARAM_ERROR", "payer.openid 缺失")
        try:
            time_expire = datetime.fromisoformat(body["time_expire"]) if "time_expire" in body else None
        except (TypeError, ValueError):
            time_expire = None
        if "time_expire" in body and (time_expire is None or time_expire.tzinfo is None):
            raise PayError(400, "PARAM_ERROR", "time_expire 格式错误")
        fp = _fingerprint(body)
        trade = self.trades.get(no)
        if trade is not None:
            if trade.state == "SUCCESS" or no in self.transactions:
                raise PayError(400, "ORDERPAID", "该订单已支付")
            if trade.state == "CLOSED":
                raise PayError(400, "ORDER_CLOSED", "订单已关闭")
            if trade.fingerprint != fp:
                raise PayError(400, "INVALID_REQUEST", "商户订单号重复")  # OUT_TRADE_NO_USED
            trade.prepay_calls += 1
            if trade.prepay_expires <= time.time():
                trade.prepay_id, trade.prepay_expires = "wx" + secrets.token_hex(16), time.time() + PREPAY_VALID_S
            return {"prepay_id": trade.prepay_id}
        if time_expire is not None and time_expire <= datetime.now(timezone.utc):
            raise PayError(400, "INVALID_REQUEST", "time_expire 已过期")
        trade = Trade(no, body, fp, "wx" + secrets.token_hex(16), time.time() + PREPAY_VALID_S,
                      time_expire or datetime.now(timezone.utc) + timedelta(hours=2))
        self.trades[no] = trade
        return {"prepay_id": trade.prepay_id}

    def trade_by_prepay(self, prepay_id: str) -> Trade:
        for t in self.trades.values():
            if t.prepay_id == prepay_id:
                return t
        raise PayError(400, "INVALID_REQUEST", "prepay_id 不存在")

    def check_pay_sign(self, params: dict[str, Any]) -> Trade:
        """What `wx.requestPayment` checks: the package names a valid prepay, and paySign is the
        merchant's RSA-SHA256 over `appId\ntimeStamp\nnonceStr\npackage\n`."""
        try:
            app_id, ts, nonce = params["appId"], params["timeStamp"], params["nonceStr"]
            package, sign_type, pay_sign = params["package"], params["signType"], params["paySign"]
        except KeyError as exc:
            raise PayError(400, "PARAM_ERROR", f"缺少参数 {exc}") from exc
        if app_id != self.appid or sign_type != "RSA" or not str(package).startswith("prepay_id="):
            raise PayError(400, "PARAM_ERROR", "调用支付JSAPI缺少参数")
        if not isinstance(ts, str) or not ts.isdigit() or not isinstance(nonce, str) or not 0 < len(nonce) <= 32:
            raise PayError(400, "PARAM_ERROR", "timeStamp/nonceStr 格式错误")
        message = f"{app_id}\n{ts}\n{nonce}\n{package}\n".encode()
        if not any(verify(k, message, pay_sign) for k in self.merchant_keys.values()):
            raise PayError(400, "SIGN_ERROR", "支付验证签名失败")
        trade = self.trade_by_prepay(package.removeprefix("prepay_id="))
        if trade.prepay_expires <= time.time():
            raise PayError(400, "INVALID_REQUEST", "prepay_id 已过期")
        return trade

    def settle_payment(self, trade: Trade, *, openid: str | None = None) -> dict[str, Any]:
        """The buyer's money moved: the trade is SUCCESS (what a query and the notice report)."""
        if trade.state == "CLOSED":
            raise PayError(400, "ORDER_CLOSED", "订单已关闭")
        if trade.time_expire <= datetime.now(timezone.utc) and trade.state != "SUCCESS":
            raise PayError(400, "ORDER_CLOSED", "订单已过期")
        trade.state = "SUCCESS"
        return self.payment_resource(trade.out_trade_no, trade.request["amount"]["total"],
                                     openid=openid or trade.request["payer"]["openid"],
                                     attach=trade.request.get("attach", ""))

    async def request_payment(self, params: dict[str, Any], *, deliver: bool = True,
                              client: httpx.AsyncClient | None = None) -> tuple[dict[str, Any], httpx.Response | None]:
        """A simulated `wx.requestPayment(params)` that the buyer completes: checks paySign,
        settles the trade and (unless `deliver=False`: a lost notice) delivers TRANSACTION.SUCCESS
        to the notify_url given at prepay. Returns (resource, the service's answer or None)."""
        trade = self.check_pay_sign(params)
        resource = self.settle_payment(trade)
        if not deliver:
            return resource, None
        notice = self.notice("TRANSACTION.SUCCESS", resource)
        try:
            resp = await self.deliver(trade.request["notify_url"], notice, client=client)
        except httpx.TransportError as e:
            # the buyer has paid whatever happens to the notice: WeChat keeps trying on its schedule
            self.deliveries.append(Delivery(trade.request["notify_url"], notice.notice_id, notice.event_type, 0,
                                            f"{type(e).__name__}: {e}"))
            self._redeliver(trade.request["notify_url"], notice)
            return resource, None
        if resp.status_code not in (200, 204):
            self._redeliver(trade.request["notify_url"], notice)
        return resource, resp

    def _redeliver(self, notify_url: str, notice: Notice) -> None:
        """WeChat's retries of a notice not acknowledged: the same notice (same id, a fresh
        signature, as WeChat signs each delivery) until 200/204 or the schedule ends."""
        async def retries() -> None:
            for wait in self.notify_retry_s:
                await asyncio.sleep(wait)
                again = self.notice(notice.event_type, notice.resource, notice_id=notice.notice_id)
                try:
                    if (await self.deliver(notify_url, again)).status_code in (200, 204):
                        return
                except httpx.TransportError as e:
                    self.deliveries.append(Delivery(notify_url, notice.notice_id, notice.event_type, 0,
                                                    f"{type(e).__name__}: {e}"))

        task = asyncio.get_running_loop().create_task(retries())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self, out_trade_no: str, body: Any) -> None:
        """`POST .../out-trade-no/{no}/close`: 204 (also when repeated). A trade in
        `close_races` is paid by the buyer just before the close lands: 204 all the same."""
        if not isinstance(body, dict) or body.get("mchid") != self.mchid or set(body) != {"mchid"}:
            raise PayError(400, "PARAM_ERROR", "mchid 错误")
        trade = self.trades.get(out_trade_no)
        if trade is None:
            raise PayError(404, "ORDER_NOT_EXIST", "订单不存在")
        if out_trade_no in self.close_races and trade.state == "NOTPAY":
            self.close_races.discard(out_trade_no)
            self.settle_payment(trade)
            return
        if trade.state == "SUCCESS":
            raise PayError(400, "ORDERPAID", "订单已支付")
        trade.state = "CLOSED"

    def query_trade(self, out_trade_no: str) -> dict[str, Any]:
        tx = self.transactions.get(out_trade_no)
        if tx is not None:
            return tx
        trade = self.trades.get(out_trade_no)
        if trade is None:
            raise PayError(404, "ORDER_NOT_EXIST", "订单不存在")
        state = trade.state
        if state == "NOTPAY" and trade.time_expire <= datetime.now(timezone.utc):
            state = trade.state = "CLOSED"
        return {"appid": self.appid, "mchid": self.mchid, "out_trade_no": out_trade_no, "trade_state": state,
                "trade_state_desc": {"NOTPAY": "未支付", "CLOSED": "已关闭"}.get(state, state),
                "payer": {"openid": trade.request["payer"]["openid"]},
                "amount": {"total": trade.request["amount"]["total"], "currency": "CNY"}}

    def behave_refund(self, out_refund_no: str | None = None, **kw: Any) -> RefundBehaviour:
        b = RefundBehaviour(**kw)
        if out_refund_no is None:
            self.refund_behaviour = b
        else:
            self.refund_behaviours[out_refund_no] = b
        return b

    def submit_refund(self, body: Any) -> tuple[dict[str, Any], RefundOrder, bool]:
        """`POST /v3/refund/domestic/refunds`: checks the fields; idempotent on out_refund_no
        (the same request answers the refund as it is now). Returns (answer, refund, created)."""
        if not isinstance(body, dict) or set(body) - REFUND_FIELDS:
            raise PayError(400, "PARAM_ERROR", "请求参数错误")
        no, trade_no = body.get("out_refund_no"), body.get("out_trade_no")
        if not isinstance(no, str) or not OUT_REFUND_NO_RE.match(no):
            raise PayError(400, "PARAM_ERROR", "out_refund_no 格式错误")
        if body.get("transaction_id") and not trade_no:
            trade_no = next((k for k, t in self.transactions.items() if t["transaction_id"] == body["transaction_id"]),
                            None)
        tx = self.transactions.get(trade_no or "")
        if tx is None:
            raise PayError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        _check_notify_url(body.get("notify_url"))
        amount = body.get("amount")
        if not isinstance(amount, dict) or not _int(amount.get("refund")) or not _int(amount.get("total")) \
                or amount["refund"] < 1 or amount.get("currency") != "CNY":
            raise PayError(400, "PARAM_ERROR", "amount 错误")
        if amount["total"] != tx["amount"]["total"]:
            raise PayError(400, "INVALID_REQUEST", "订单金额不一致")
        goods = body.get("goods_detail", [])
        if not isinstance(goods, list):
            raise PayError(400, "PARAM_ERROR", "goods_detail 错误")
        for g in goods:
            if not isinstance(g, dict) or not isinstance(g.get("merchant_goods_id"), str) \
                    or not all(_int(g.get(f)) for f in ("unit_price", "refund_amount", "refund_quantity")) \
                    or g["refund_amount"] < 0 or g["refund_quantity"] < 0:
                raise PayError(400, "PARAM_ERROR", "goods_detail 错误")
        if goods and sum(g["refund_amount"] for g in goods) > amount["refund"]:
            raise PayError(400, "PARAM_ERROR", "goods_detail 退款金额之和大于退款金额")
        fp = _fingerprint(body)
        existing = self.refund_orders.get(no)
        if existing is not None:
            if existing.fingerprint != fp:
                raise PayError(400, "INVALID_REQUEST", "退款单号重复")
            existing.submissions += 1
            return self._refund_answer(no), existing, False
        taken = sum(r.request["amount"]["refund"] for r in self.refund_orders.values()
                    if r.request.get("out_trade_no") == trade_no and self.refunds[r.out_refund_no]["refund_status"]
                    in ("PROCESSING", "SUCCESS", "ABNORMAL"))
        if taken + amount["refund"] > amount["total"]:
            raise PayError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        behaviour = self.refund_behaviours.get(no, self.refund_behaviour)
        if behaviour.refuse:
            raise PayError(400, behaviour.refuse, "退款申请被拒绝")
        order = RefundOrder(no, {**body, "out_trade_no": trade_no}, fp, behaviour)
        self.refund_orders[no] = order
        res = self.refund_resource(trade_no, no, amount["refund"], amount["total"], status="SUCCESS")
        res.pop("success_time", None)
        res["refund_status"] = behaviour.answer
        res["create_time"] = datetime.now(CST).isoformat(timespec="seconds")
        if behaviour.answer == "SUCCESS":
            res["success_time"] = res["create_time"]
        return self._refund_answer(no), order, True

    def _refund_answer(self, out_refund_no: str) -> dict[str, Any]:
        r = dict(self.refunds[out_refund_no])
        r["status"] = r["refund_status"]
        r["amount"] = {**r["amount"], "currency": "CNY"}
        return r

    async def finish_refund(self, out_refund_no: str, status: str = "SUCCESS", *, notify: bool = True,
                            client: httpx.AsyncClient | None = None) -> httpx.Response | None:
        """WeChat finishes a PROCESSING refund (SUCCESS / CLOSED / ABNORMAL) and notifies."""
        order = self.refund_orders[out_refund_no]
        r = self.refunds[out_refund_no]
        r["refund_status"] = status
        if status == "SUCCESS":
            r["success_time"] = datetime.now(CST).isoformat(timespec="seconds")
        if not notify:
            return None
        return await self.deliver(order.request["notify_url"], self.notice(f"REFUND.{status}", dict(r)), client=client)

    def _schedule_finish(self, order: RefundOrder) -> None:
        b = order.behaviour
        if b.final is None or b.answer == b.final:
            return

        async def later() -> None:
            await asyncio.sleep(b.finish_after_s)
            try:
                await self.finish_refund(order.out_refund_no, b.final or "SUCCESS", notify=b.notify)
            except httpx.HTTPError:
                pass  # WeChat would retry; the merchant's query settles it

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- bills -----------------------------------------------------------------------------------
    def trade_bill(self, bill_date: str) -> str:
        """The day's trade bill (bill_type=ALL) as WeChat writes it: a header, one row per
        payment and per refund, every field led by a backquote, amounts in yuan, then totals."""
        head = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
                "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
                "手续费,费率,订单金额,申请退款金额,费率备注")
        rows, paid, refunded = [], 0, 0
        for tx in self.transactions.values():
            when = datetime.fromisoformat(tx["success_time"]).astimezone(CST)
            if when.date().isoformat() != bill_date or tx.get("mchid") != self.mchid:
                continue
            total = tx["amount"]["total"]
            paid += total
            rows.append([when.strftime("%Y-%m-%d %H:%M:%S"), tx["appid"], tx["mchid"], "0", "", tx["transaction_id"],
                         tx["out_trade_no"], tx["payer"]["openid"], "JSAPI", "SUCCESS", "OTHERS", "CNY", _yuan(total),
                         "0.00", "0", "0", "0.00", "0.00", "", "", "商品", tx.get("attach", ""), "0.00", "0.60%",
                         _yuan(total), "0.00", ""])
        for r in self.refunds.values():
            if r.get("refund_status") != "SUCCESS" or "success_time" not in r:
                continue
            when = datetime.fromisoformat(r["success_time"]).astimezone(CST)
            if when.date().isoformat() != bill_date:
                continue
            refund = r["amount"]["refund"]
            refunded += refund
            tx = self.transactions.get(r["out_trade_no"], {})
            rows.append([when.strftime("%Y-%m-%d %H:%M:%S"), self.appid, self.mchid, "0", "", r["transaction_id"],
                         r["out_trade_no"], tx.get("payer", {}).get("openid", ""), "JSAPI", "REFUND", "OTHERS", "CNY",
                         "0.00", "0.00", r["refund_id"], r["out_refund_no"], _yuan(refund), "0.00", "ORIGINAL",
                         "SUCCESS", "商品", "", "0.00", "0.60%", _yuan(r["amount"]["total"]), _yuan(refund), ""])
        out = [head] + [",".join("`" + v for v in row) for row in rows]
        out += ["总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
                ",".join("`" + v for v in [str(len(rows)), _yuan(paid), _yuan(refunded), "0.00", "0.00", _yuan(paid),
                                           _yuan(refunded)])]
        return "\n".join(out) + "\n"

    def fund_flow_bill(self, bill_date: str) -> str:
        """The day's fund-flow bill (BASIC account): income per payment, expense per refund."""
        head = "记账时间,微信支付业务单号,资金流水单号,业务名称,业务类型,收支类型,收支金额（元）,账户结余（元）,资金变更提交申请人,备注,业务凭证号"
        rows, balance, n_in, n_out, s_in, s_out = [], 0, 0, 0, 0, 0
        events = []
        for tx in self.transactions.values():
            if tx.get("mchid") == self.mchid:
                events.append((tx["success_time"], tx["transaction_id"], "交易", "收入", tx["amount"]["total"],
                               tx["out_trade_no"]))
        for r in self.refunds.values():
            if r.get("refund_status") == "SUCCESS" and "success_time" in r:
                events.append((r["success_time"], r["refund_id"], "退款", "支出", r["amount"]["refund"], r["out_refund_no"]))
        for when_s, biz_no, kind, io_type, fen, voucher in sorted(events):
            when = datetime.fromisoformat(when_s).astimezone(CST)
            if when.date().isoformat() != bill_date:
                continue
            balance += fen if io_type == "收入" else -fen
            if io_type == "收入":
                n_in, s_in = n_in + 1, s_in + fen
            else:
                n_out, s_out = n_out + 1, s_out + fen
            rows.append([when.strftime("%Y-%m-%d %H:%M:%S"), biz_no, "F" + hashlib.sha1(biz_no.encode()).hexdigest()[:20],
                         kind, kind, io_type, _yuan(fen), _yuan(balance), "system", "", voucher])
        out = [head] + [",".join("`" + v for v in row) for row in rows]
        out += ["资金流水总笔数,收入笔数,收入金额,支出笔数,支出金额",
                ",".join("`" + v for v in [str(len(rows)), str(n_in), _yuan(s_in), str(n_out), _yuan(s_out)])]
        return "\n".join(out) + "\n"

    def bill_answer(self, text: str, base_url: str, tar_type: str | None) -> dict[str, Any]:
        """`{hash_type, hash_value, download_url}`: the hash is SHA1 of the bill itself (before
        gzip); the file is served at download_url (a signed GET whose answer is not signed)."""
        raw = text.encode("utf-8")
        token = secrets.token_urlsafe(16)
        data = gzip.compress(raw) if tar_type == "GZIP" else raw
        if self.corrupt_bills:
            plain = bytearray(raw)
            plain[-3:-2] = b"9" if plain[-3:-2] != b"9" else b"8"
            data = gzip.compress(bytes(plain)) if tar_type == "GZIP" else bytes(plain)
        self.bill_files[token] = data
        return {"hash_type": "SHA1", "hash_value": hashlib.sha1(raw).hexdigest(),
                "download_url": f"{base_url.rstrip('/')}/v3/billdownload/file?token={token}"}

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


def _bill_day(bill_date: str) -> str:
    try:
        day = datetime.strptime(bill_date, "%Y-%m-%d").date()
    except ValueError:
        raise PayError(400, "PARAM_ERROR", "bill_date 格式错误") from None
    if day > datetime.now(CST).date():
        raise PayError(400, "NO_STATEMENT_EXIST", "账单文件不存在")
    return day.isoformat()


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}" if fen >= 0 else "-" + _yuan(-fen)


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

    def refused(request: Request, e: PayError) -> Response:
        pay.calls.append((request.method, request.url.path, e.status, e.code))
        return answer(e.status, {"code": e.code, "message": e.message})

    def ok(request: Request, status: int, payload: dict[str, Any] | None) -> Response:
        pay.calls.append((request.method, request.url.path, status, None))
        if payload is None:
            return Response(status_code=status, headers=pay.signed_headers(b""))
        return answer(status, payload)

    async def json_body(request: Request) -> Any:
        try:
            return json.loads(await request.body() or b"null")
        except ValueError:
            raise PayError(400, "PARAM_ERROR", "请求体不是JSON")

    @router.post("/v3/pay/transactions/jsapi")
    async def jsapi(request: Request) -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        try:
            return ok(request, 200, pay.jsapi(await json_body(request)))
        except PayError as e:
            return refused(request, e)

    @router.post("/v3/pay/transactions/out-trade-no/{out_trade_no}/close")
    async def close(out_trade_no: str, request: Request) -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        try:
            pay.close(out_trade_no, await json_body(request))
            return ok(request, 204, None)
        except PayError as e:
            return refused(request, e)

    @router.get("/v3/pay/transactions/out-trade-no/{out_trade_no}")
    async def query_transaction(out_trade_no: str, request: Request, mchid: str = "") -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        if mchid != pay.mchid:
            return refused(request, PayError(400, "PARAM_ERROR", "mchid与订单不匹配"))
        try:
            return ok(request, 200, pay.query_trade(out_trade_no))
        except PayError as e:
            return refused(request, e)

    @router.post("/v3/refund/domestic/refunds")
    async def submit_refund(request: Request) -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        try:
            result, order, created = pay.submit_refund(await json_body(request))
        except PayError as e:
            return refused(request, e)
        if created:
            pay._schedule_finish(order)
        b = order.behaviour
        if b.fault and order.faults_done < b.fault_times:
            order.faults_done += 1
            if b.fault == "slow":
                await asyncio.sleep(b.slow_s)   # the refund exists; the answer comes too late
            else:
                return refused(request, PayError(500, "SYSTEM_ERROR", "系统错误"))
        return ok(request, 200, result)

    @router.get("/v3/bill/tradebill")
    async def trade_bill(request: Request, bill_date: str = "", bill_type: str = "ALL",
                         tar_type: str | None = None) -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        try:
            day = _bill_day(bill_date)
            if bill_type not in ("ALL", "SUCCESS", "REFUND") or tar_type not in (None, "GZIP"):
                raise PayError(400, "PARAM_ERROR", "bill_type/tar_type 错误")
            return ok(request, 200, pay.bill_answer(pay.trade_bill(day), str(request.base_url), tar_type))
        except PayError as e:
            return refused(request, e)

    @router.get("/v3/bill/fundflowbill")
    async def fund_flow_bill(request: Request, bill_date: str = "", account_type: str = "BASIC",
                             tar_type: str | None = None) -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        try:
            day = _bill_day(bill_date)
            if account_type not in ("BASIC", "OPERATION", "FEES") or tar_type not in (None, "GZIP"):
                raise PayError(400, "PARAM_ERROR", "account_type/tar_type 错误")
            return ok(request, 200, pay.bill_answer(pay.fund_flow_bill(day), str(request.base_url), tar_type))
        except PayError as e:
            return refused(request, e)

    @router.get("/v3/billdownload/file")
    async def bill_download(request: Request, token: str = "") -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        data = pay.bill_files.get(token)
        if data is None:
            return refused(request, PayError(400, "PARAM_ERROR", "token 无效"))
        pay.calls.append(("GET", request.url.path, 200, None))
        return Response(data, media_type="application/octet-stream")   # not signed: the hash is the check

    @router.post("/_standin/pay/request-payment", include_in_schema=False)
    async def control_request_payment(request: Request) -> Response:
        """The mini-program's wx.requestPayment(params), completed by the buyer."""
        params = await request.json()
        deliver = bool(params.pop("deliver", True))
        try:
            res, resp = await pay.request_payment(params, deliver=deliver)
        except PayError as e:
            return Response(json.dumps({"errMsg": f"requestPayment:fail {e.code} {e.message}"}, ensure_ascii=False),
                            status_code=e.status, media_type="application/json")
        body = {"errMsg": "requestPayment:ok", "transaction_id": res["transaction_id"],
                "notify_status": resp.status_code if resp is not None else None,
                # not acknowledged at once: WeChat retries on its schedule (the buyer has paid)
                "notify_retrying": deliver and (resp is None or resp.status_code not in (200, 204))}
        return Response(json.dumps(body), media_type="application/json")

    @router.get("/v3/refund/domestic/refunds/{out_refund_no}")
    async def query_refund(out_refund_no: str, request: Request) -> Response:
        if (denied := await authorized(request)) is not None:
            return denied
        if out_refund_no not in pay.refunds:
            return refused(request, PayError(404, "RESOURCE_NOT_EXISTS", "退款单不存在"))
        return ok(request, 200, pay._refund_answer(out_refund_no))

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
