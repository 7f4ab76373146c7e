"""APIv3 signatures and encryption, following WeChat Pay's documented contract
(see ../shared/design/wechat.md in the project docs)."""
from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509 import load_pem_x509_certificate

SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
FRESHNESS_S = 300  # WeChat's own SDKs reject |now - ts| >= 5 minutes


def load_private_key(pem: bytes | str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def read_pem(value: str) -> str:
    """A PEM given inline or as a path to a file (a key mounted from a Kubernetes Secret)."""
    if not value or "-----BEGIN" in value:
        return value
    return Path(value).expanduser().read_text()


def load_public_key(pem: bytes | str) -> rsa.RSAPublicKey:
    """A platform public key (public-key mode) or the key inside a platform certificate."""
    data = pem.encode() if isinstance(pem, str) else pem
    if b"BEGIN CERTIFICATE" in data:
        key = load_pem_x509_certificate(data).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(public_key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature_b64, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


def notify_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """What WeChat signs on a notice or response: three lines, each ending in `\\n`, raw body."""
    return timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"


def decrypt_resource(apiv3_key: bytes, nonce: str, ciphertext_b64: str, associated_data: str | None) -> bytes:
    return AESGCM(apiv3_key).decrypt(nonce.encode(), base64.b64decode(ciphertext_b64), (associated_data or "").encode() or None)


def encrypt_resource(apiv3_key: bytes, plaintext: bytes, associated_data: str = "", nonce: str | None = None) -> dict[str, str]:
    """The stand-in's side of `decrypt_resource` (also handy for building test notices)."""
    nonce = nonce or secrets.token_urlsafe(9)[:12]
    ct = AESGCM(apiv3_key).encrypt(nonce.encode(), plaintext, associated_data.encode() or None)
    return {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(ct).decode(), "nonce": nonce,
            "associated_data": associated_data}


def authorization_header(
    *, mchid: str, serial_no: str, private_key: rsa.RSAPrivateKey, method: str, path_with_query: str,
    body: bytes | str = b"", timestamp: int | None = None, nonce: str | None = None,
) -> str:
    """`Authorization` for a merchant request: signs `METHOD\\nURL\\nts\\nnonce\\nbody\\n`."""
    ts = str(timestamp or int(time.time()))
    nonce = nonce or secrets.token_hex(16)
    body_b = body.encode() if isinstance(body, str) else body
    msg = f"{method.upper()}\n{path_with_query}\n{ts}\n{nonce}\n".encode() + body_b + b"\n"
    sig = sign(private_key, msg)
    return (f'{SIGNATURE_TYPE} mchid="{mchid}",nonce_str="{nonce}",signature="{sig}",'
            f'timestamp="{ts}",serial_no="{serial_no}"')


def parse_authorization(value: str) -> dict[str, str]:
    """Split an `Authorization` header (the stand-in verifies what merchants send)."""
    scheme, _, rest = value.partition(" ")
    if scheme != SIGNATURE_TYPE:
        raise ValueError("bad authorization scheme")
    out = {}
    for part in rest.split(","):
        k, _, v = part.strip().partition("=")
        out[k] = v.strip('"')
    return out


def oaep_encrypt(public_key: rsa.RSAPublicKey, plaintext: str) -> str:
    """Sensitive fields (e.g. a transfer's `user_name`): RSA-OAEP (SHA-1, as WeChat specifies)."""
    ct = public_key.encrypt(plaintext.encode(), padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    return base64.b64encode(ct).decode()


def oaep_decrypt(private_key: rsa.RSAPrivateKey, ciphertext_b64: str) -> str:
    return private_key.decrypt(base64.b64decode(ciphertext_b64),
                               padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)).decode()


class NotifyError(ValueError):
    """A notice we refuse; `status` is the HTTP status to answer WeChat with."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code, self.status = code, status


@dataclass
class NotifyVerifier:
    """Verifies and decrypts WeChat Pay notices. `platform_keys` maps `Wechatpay-Serial`
    (certificate serial or `PUB_KEY_ID_...`) to the key: both during a switch of modes.
    An unknown serial is refused here, never fetched from inside the webhook."""

    platform_keys: Mapping[str, rsa.RSAPublicKey]
    apiv3_key: bytes
    freshness_s: int = FRESHNESS_S

    def verify_and_decrypt(self, headers: Mapping[str, str], raw_body: bytes, now: float | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Returns (notice envelope, decrypted resource) or raises NotifyError."""
        h = {k.lower(): v for k, v in headers.items()}
        serial, signature = h.get("wechatpay-serial"), h.get("wechatpay-signature")
        ts, nonce = h.get("wechatpay-timestamp"), h.get("wechatpay-nonce")
        sig_type = h.get("wechatpay-signature-type", SIGNATURE_TYPE)
        if not (serial and signature and ts and nonce):
            raise NotifyError("missing_headers", "Wechatpay-Serial/Signature/Timestamp/Nonce required", 400)
        if sig_type != SIGNATURE_TYPE:
            raise NotifyError("bad_signature_type", f"unsupported signature type {sig_type!r}", 400)
        if not ts.isdigit():
            raise NotifyError("bad_timestamp", "timestamp is not unix seconds", 400)
        if abs((now or time.time()) - int(ts)) >= self.freshness_s:
            raise NotifyError("stale_timestamp", "timestamp outside the 5 minute window", 401)
        key = self.platform_keys.get(serial)
        if key is None:
            raise NotifyError("unknown_serial", f"unknown platform serial {serial!r}", 401)
        # Probe traffic (WECHATPAY/SIGNTEST/...) is not base64 of a valid signature: it fails here.
        if not verify(key, notify_message(ts, nonce, raw_body), signature):
            raise NotifyError("bad_signature", "signature verification failed", 401)
        try:
            notice = json.loads(raw_body)
            res = notice["resource"]
            if not isinstance(res, dict):
                raise TypeError("resource is not an object")
            if res.get("algorithm") != "AEAD_AES_256_GCM":
                raise NotifyError("bad_algorithm", f"unsupported algorithm {res.get('algorithm')!r}", 400)
            plain = decrypt_resource(self.apiv3_key, res["nonce"], res["ciphertext"], res.get("associated_data"))
            return notice, json.loads(plain)
        except NotifyError:
            raise
        except (InvalidTag, KeyError, TypeError, ValueError, AttributeError) as exc:  # any malformed resource
            raise NotifyError("undecryptable", f"cannot decrypt resource: {type(exc).__name__}", 400) from exc
