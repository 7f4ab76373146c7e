"""WeChat Pay APIv3 cryptography shared by the services that talk to WeChat Pay (orders:
payment and refund notices; payout: merchant transfers). Plumbing only: signatures,
AEAD_AES_256_GCM resources, request authorization, RSA-OAEP field encryption."""
from shared.wechatpay.crypto import (
    NotifyError, NotifyVerifier, authorization_header, decrypt_resource, encrypt_resource,
    load_private_key, load_public_key, notify_message, oaep_decrypt, oaep_encrypt, read_pem, sign, verify,
)

__all__ = [
    "NotifyError", "NotifyVerifier", "authorization_header", "decrypt_resource", "encrypt_resource",
    "load_private_key", "load_public_key", "notify_message", "oaep_decrypt", "oaep_encrypt", "read_pem", "sign",
    "verify",
]
