"""TLS and SASL/SCRAM for every Kafka client (aiokafka producers, consumers, admin clients and
the FastStream broker), from the environment (docs/security.md, "Transport"):

    KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default, local only) | SSL | SASL_SSL | SASL_PLAINTEXT
    KAFKA_SSL_CAFILE          the cluster CA (Strimzi: <cluster>-cluster-ca-cert, ca.crt)
    KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE   a client certificate (mutual TLS, Strimzi `tls` users)
    KAFKA_SSL_CHECK_HOSTNAME  true (default)
    KAFKA_SASL_MECHANISM      SCRAM-SHA-512 (default; Strimzi `scram-sha-512` users) | SCRAM-SHA-256 | PLAIN
    KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)

`kafka_options()` gives the keyword arguments of aiokafka's clients; `faststream_security()`
the FastStream `security=` object. A partial configuration refuses to start (ValueError)."""
from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any, Mapping

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_SSL", "SASL_PLAINTEXT")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _env(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, default).strip()


def ssl_context(env: Mapping[str, str] | None = None) -> ssl.SSLContext:
    env = os.environ if env is None else env
    ctx = ssl.create_default_context(cafile=_env(env, "KAFKA_SSL_CAFILE") or None)
    ctx.check_hostname = _env(env, "KAFKA_SSL_CHECK_HOSTNAME", "true").lower() != "false"
    cert, key = _env(env, "KAFKA_SSL_CERTFILE"), _env(env, "KAFKA_SSL_KEYFILE")
    if bool(cert) != bool(key):
        raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def _sasl(env: Mapping[str, str]) -> tuple[str, str, str]:
    mechanism = _env(env, "KAFKA_SASL_MECHANISM", "SCRAM-SHA-512").upper()
    if mechanism not in MECHANISMS:
        raise ValueError(f"KAFKA_SASL_MECHANISM must be one of {MECHANISMS}")
    user = _env(env, "KAFKA_SASL_USERNAME")
    password = env.get("KAFKA_SASL_PASSWORD", "")
    if not password and _env(env, "KAFKA_SASL_PASSWORD_FILE"):
        password = Path(_env(env, "KAFKA_SASL_PASSWORD_FILE")).read_text().strip()
    if not user or not password:
        raise ValueError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with a SASL protocol")
    return mechanism, user, password


def protocol(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    proto = _env(env, "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if proto not in PROTOCOLS:
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL must be one of {PROTOCOLS}")
    return proto


def kafka_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments (AIOKafkaProducer / AIOKafkaConsumer / AIOKafkaAdminClient)."""
    env = os.environ if env is None else env
    proto = protocol(env)
    if proto == "PLAINTEXT":
        return {}
    opts: dict[str, Any] = {"security_protocol": proto}
    if proto in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = ssl_context(env)
    if proto.startswith("SASL"):
        mechanism, user, password = _sasl(env)
        opts.update(sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
    return opts


def faststream_security(env: Mapping[str, str] | None = None):
    """FastStream's `security=` for KafkaBroker (None: plaintext)."""
    from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

    env = os.environ if env is None else env
    proto = protocol(env)
    if proto == "PLAINTEXT":
        return None
    ctx = ssl_context(env) if proto in ("SSL", "SASL_SSL") else None
    if proto == "SSL":
        return BaseSecurity(ssl_context=ctx, use_ssl=True)
    mechanism, user, password = _sasl(env)
    cls = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}[mechanism]
    return cls(username=user, password=password, ssl_context=ctx, use_ssl=proto == "SASL_SSL")
