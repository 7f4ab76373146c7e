"""Every topic, its partition key and every consumer group, in one place.

Each service publishes one stream of its own events; the key is the aggregate id named by
the payload's `key_field`, so all events of one aggregate land on one partition in order."""
from __future__ import annotations

import os

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
