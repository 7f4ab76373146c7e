"""Transport settings: Kafka TLS / SASL for every client, PostgreSQL's sslmode kept for migrations."""
import ssl

import pytest
from faststream.security import BaseSecurity, SASLScram512

from shared.db import _yoyo_url
from shared.kafka_security import faststream_security, kafka_options


def test_plaintext_by_default():
    assert kafka_options({}) == {} and faststream_security({}) is None


def test_sasl_ssl_scram_for_aiokafka_and_faststream():
    env = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "orders", "KAFKA_SASL_PASSWORD": "pw"}
    opts = kafka_options(env)
    assert (opts["security_protocol"], opts["sasl_mechanism"], opts["sasl_plain_username"],
            opts["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "orders", "pw")
    assert isinstance(opts["ssl_context"], ssl.SSLContext) and opts["ssl_context"].check_hostname
    sec = faststream_security(env)
    assert isinstance(sec, SASLScram512) and sec.use_ssl


def test_tls_only_and_refusals(tmp_path):
    assert isinstance(faststream_security({"KAFKA_SECURITY_PROTOCOL": "SSL"}), BaseSecurity)
    assert kafka_options({"KAFKA_SECURITY_PROTOCOL": "SSL"})["security_protocol"] == "SSL"
    with pytest.raises(ValueError):
        kafka_options({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "orders"})  # no password
    with pytest.raises(ValueError):
        kafka_options({"KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ValueError):
        kafka_options({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": str(tmp_path / "c.pem")})  # no key
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    opts = kafka_options({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "u",
                          "KAFKA_SASL_PASSWORD_FILE": str(pw), "KAFKA_SASL_MECHANISM": "scram-sha-256"})
    assert (opts["sasl_plain_password"], opts["sasl_mechanism"]) == ("from-file", "SCRAM-SHA-256")


def test_migrations_keep_the_dsns_ssl_settings():
    url = _yoyo_url("postgresql://u:p@db:5432/fenxiao?sslmode=verify-full&sslrootcert=/ca.crt", "orders")
    assert url.startswith("postgresql+psycopg://u:p@db:5432/fenxiao?")
    assert "sslmode=verify-full" in url and "sslrootcert=%2Fca.crt" in url and url.endswith("schema=orders")
    assert _yoyo_url("postgresql://u:p@db/fenxiao", "orders").endswith("/fenxiao?schema=orders")
