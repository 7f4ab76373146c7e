"""Every topic, its partition key and every consumer group, in one place.

Each service publishes one stream of its own events; the key is the aggregate id named by
the payload's `key_field`, so all events of one aggregate land on one partition in order."""
from __future__ import annotations

import os
from typing import Iterable

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.kafka_security import kafka_options

_log = structlog.get_logger(__name__)

# An optional namespace prefix (e.g. per benchmark run or per tenant environment) applied to
# every topic; read once at import, so every process of one deployment must share it.
NAMESPACE = os.environ.get("FENXIAO_TOPIC_NAMESPACE", "")


def _t(name: str) -> str:
    return f"{NAMESPACE}.{name}" if NAMESPACE else name


REFERRAL_EVENTS = _t("referral.referral-events.v1")   # key: customer id (bindings) / promoter id
ORDER_EVENTS = _t("orders.order-events.v1")           # key: order id
COMMISSION_EVENTS = _t("commission.commission-events.v1")  # key: beneficiary promoter id
PAYOUT_EVENTS = _t("payout.withdrawal-events.v1")     # key: promoter id
CONSOLE_EVENTS = _t("console.operator-events.v1")     # key: operator (the console's audit trail)
ENGAGEMENT_EVENTS = _t("engagement.engagement-events.v1")  # key: promoter id (announcements: announcement id)

DEAD_LETTER_SUFFIX = ".dlq"

ALL_TOPICS = (REFERRAL_EVENTS, ORDER_EVENTS, COMMISSION_EVENTS, PAYOUT_EVENTS, CONSOLE_EVENTS, ENGAGEMENT_EVENTS)
PARTITIONS = 4


def without_namespace(topic: str) -> str:
    return topic[len(NAMESPACE) + 1:] if NAMESPACE and topic.startswith(NAMESPACE + ".") else topic


def dead_letter(topic: str) -> str:
    """The topic where what cannot be parsed or validated from `topic` is parked."""
    return topic + DEAD_LETTER_SUFFIX


def group(service: str, projection: str) -> str:
    """Consumer group name: `<svc>.<projection>`."""
    return f"{service}.{projection}"


# Which service owns (publishes) which stream: an event type belongs to exactly one.
OWNER_TOPIC = {
    "referral": REFERRAL_EVENTS,
    "orders": ORDER_EVENTS,
    "commission": COMMISSION_EVENTS,
    "payout": PAYOUT_EVENTS,
    "console": CONSOLE_EVENTS,
    "engagement": ENGAGEMENT_EVENTS,
}


# -- the log's settings: created here, checked at every start ------------------------------------
#: A topic of the event log keeps every event forever (no time or size limit): balances are
#: rebuilt, audits replayed and new projections built from offset 0.
UNLIMITED_RETENTION = {"retention.ms": "-1", "retention.bytes": "-1"}


class TopicSettings(BaseSettings):
    """How topics are created. Locally one broker: replication 1, min ISR 1. Production: 3 and 2
    (a write is acknowledged by two replicas; one broker may be down), and
    `FENXIAO_CREATE_TOPICS=false` when the platform creates them (Strimzi `KafkaTopic`s with the
    same settings): the service then only checks them."""

    model_config = SettingsConfigDict(extra="ignore")

    create: bool = Field(True, validation_alias="FENXIAO_CREATE_TOPICS")
    partitions: int = Field(PARTITIONS, ge=1, validation_alias="FENXIAO_TOPIC_PARTITIONS")
    replication_factor: int = Field(1, ge=1, validation_alias="FENXIAO_TOPIC_REPLICATION")
    min_insync_replicas: int = Field(1, ge=1, validation_alias="FENXIAO_TOPIC_MIN_INSYNC_REPLICAS")

    def topic_configs(self) -> dict[str, str]:
        return {**UNLIMITED_RETENTION, "min.insync.replicas": str(self.min_insync_replicas)}


class LogRetentionError(RuntimeError):
    """A topic the service reads would lose events (finite retention, or compaction)."""


def finite_retention(configs: dict[str, str]) -> str | None:
    """Why a topic with these configs does not keep every event, or None when it does."""
    problems = [f"{k}={configs.get(k)}" for k in UNLIMITED_RETENTION if configs.get(k) != "-1"]
    if "compact" in (configs.get("cleanup.policy") or ""):
        problems.append(f"cleanup.policy={configs['cleanup.policy']}")
    return ", ".join(problems) or None


async def _describe(admin, names: list[str], attempts: int = 10) -> dict[str, dict[str, str]]:
    """Topic configs by name; a topic the broker does not know (yet: just created) is retried a
    few times, then left out."""
    import asyncio

    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    out: dict[str, dict[str, str]] = {}
    todo = list(names)
    for attempt in range(attempts):
        if not todo:
            break
        if attempt:
            await asyncio.sleep(0.2)
        for resp in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n, None) for n in todo]):
            for code, _msg, _type, name, entries in resp.resources:
                if code == 0:
                    out[name] = {e[0]: e[1] for e in entries}
        todo = [n for n in todo if n not in out]
    return out


async def ensure_topics(bootstrap: str, read: Iterable[str] = (), *, settings: TopicSettings | None = None,
                        admin_kw: dict | None = None) -> None:
    """Make sure the event log is complete before a service starts: every fenxiao topic, its
    dead-letter topic and the topics in `read` exist with unlimited retention, and every topic in
    `read` keeps every event. With `FENXIAO_CREATE_TOPICS=false` nothing is created or changed,
    only checked. Raises LogRetentionError naming the topic and its setting."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    settings = settings or TopicSettings()
    read = list(dict.fromkeys(read))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **{**kafka_options(), **(admin_kw or {})})
    await admin.start()
    try:
        if settings.create:
            existing = set(await admin.list_topics())
            log_topics = list(dict.fromkeys([t for base in ALL_TOPICS for t in (base, dead_letter(base))] + read))
            missing = [t for t in log_topics if t not in existing]
            if missing:
                resp = await admin.create_topics([NewTopic(t, settings.partitions, settings.replication_factor,
                                                           topic_configs=settings.topic_configs()) for t in missing])
                for name, code, *_ in getattr(resp, "topic_errors", []) or []:
                    if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (another service won the race)
                        _log.warning("topic_create_failed", topic=name, error_code=code)
            # A topic that existed before (auto-created by a producer, or by older code) gets the
            # log's retention now; only here, where the service owns topic settings.
            present = [t for t in log_topics if t in existing]
            for name, cfg in (await _describe(admin, present)).items():
                if finite_retention(cfg):
                    await _make_unlimited(admin, name, cfg)
                    _log.warning("topic_retention_made_unlimited", topic=name, was=finite_retention(cfg))
        described = await _describe(admin, read)
        for name in read:
            if name not in described:
                raise LogRetentionError(f"topic {name} does not exist (FENXIAO_CREATE_TOPICS=false: the platform must "
                                        f"create it with retention.ms=-1 and retention.bytes=-1)")
            why = finite_retention(described[name])
            if why:
                raise LogRetentionError(
                    f"topic {name} does not keep every event ({why}): the event log is the truth and must have "
                    f"retention.ms=-1 and retention.bytes=-1; refusing to start")
    finally:
        await admin.close()


async def _make_unlimited(admin, name: str, cfg: dict[str, str]) -> None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    # AlterConfigs (not incremental) replaces the topic's dynamic configs: carry over the ones set.
    keep = {k: v for k, v in cfg.items() if k in ("min.insync.replicas", "cleanup.policy", "message.timestamp.type")}
    if "compact" in keep.get("cleanup.policy", ""):
        keep["cleanup.policy"] = "delete"
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, {**keep, **UNLIMITED_RETENTION})])
