"""Settings common to every service, from the environment (Kubernetes sets these)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Each service subclasses this with its own `env_prefix` for its own knobs; the
    connection settings below are read without a prefix (shared by the deployment)."""

    model_config = SettingsConfigDict(extra="ignore")

    kafka_bootstrap_servers: str = Field("127.0.0.1:19092", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: str = Field(
        "postgresql://fenxiao:fenxiao@127.0.0.1:55432/fenxiao", validation_alias="DATABASE_URL"
    )
    #: HMAC key the gateway signs identities with (see shared.identity): required to serve, at
    #: least 32 random bytes; a placeholder or a short key refuses to start
    identity_secret: str = Field("", validation_alias="FENXIAO_IDENTITY_SECRET", repr=False)
    #: the key id (`kid` claim) of that key
    identity_kid: str = Field("k1", validation_alias="FENXIAO_IDENTITY_KID", min_length=1, max_length=32)
    #: during a rotation: the previous key and its id, still accepted until every token signed
    #: with it has expired (the gateway signs with the new one)
    identity_previous_secret: str = Field("", validation_alias="FENXIAO_IDENTITY_PREVIOUS_SECRET", repr=False)
    identity_previous_kid: str = Field("", validation_alias="FENXIAO_IDENTITY_PREVIOUS_KID", max_length=32)
    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    log_json: bool = Field(True, validation_alias="LOG_JSON")
    #: OTLP endpoint; empty keeps spans in-process (still correlated in logs)
    otel_exporter_otlp_endpoint: str = Field("", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    projector_batch_max: int = Field(2000, validation_alias="PROJECTOR_BATCH_MAX")
    #: how long the broker may hold a projector's fetch for data that has not come (Kafka's and
    #: aiokafka's default is 500). It bounds a stall, not just idle polling: while a long batch
    #: runs, aiokafka sends its next fetch for only the partitions with nothing buffered (often
    #: idle ones), and no other fetch goes to that broker until this one returns
    #: (shared.projector.subscribe)
    projector_fetch_max_wait_ms: int = Field(50, ge=1, le=500, validation_alias="PROJECTOR_FETCH_MAX_WAIT_MS")
    #: a projector's batches start at least this far apart (0: each as soon as the last is done).
    #: Under a steady stream a batch per fetch pays its fixed cost (a transaction's round trips, a
    #: relay cycle) for a few records; an order waits at most this much longer (shared.projector.subscribe)
    projector_batch_min_interval_ms: int = Field(0, ge=0, le=1000, validation_alias="PROJECTOR_BATCH_MIN_INTERVAL_MS")
    #: off is safe for exactly-once (state and offsets commit or vanish together) and faster
    projector_synchronous_commit: bool = Field(True, validation_alias="PROJECTOR_SYNCHRONOUS_COMMIT")
    #: where the outbox relay runs: `inline` (a task on the service's event loop) or `process` (its
    #: own OS process beside the service, shared.relay_process: the publishing work leaves the
    #: loop that projects; docs/reliability.md)
    outbox_relay: Literal["inline", "process"] = Field("inline", validation_alias="FENXIAO_OUTBOX_RELAY")
    #: after a relay cycle that published, wait this long before the next (shared.outbox.OutboxRelay):
    #: fewer, larger cycles under load, at the price of up to this much more time to the log
    outbox_linger_ms: int = Field(0, ge=0, le=1000, validation_alias="FENXIAO_OUTBOX_LINGER_MS")
    db_pool_min: int = Field(1, validation_alias="DB_POOL_MIN")
    db_pool_max: int = Field(10, validation_alias="DB_POOL_MAX")
    #: seconds an idle HTTP keep-alive connection stays open; above the gateway's idle timeout
    #: (often 60 s) so the gateway, not the service, closes first and never sends on a dying socket
    http_keepalive_s: int = Field(75, ge=1, le=3600, validation_alias="FENXIAO_HTTP_KEEPALIVE_S")

    def identity_keys(self):
        """The key ring identities are verified with. A missing, placeholder or short key (current
        or previous) raises ValueError: `shared.service.create_app` calls this, so a service
        refuses to start (tools that verify no identity, like the replays, do not need the key)."""
        from shared.identity import KeyRing

        return KeyRing.from_settings(self)
