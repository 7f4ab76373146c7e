"""Event contracts: the public, versioned shape of every event on the wire.

One module per publishing service. Fields may be added (with defaults); renaming or removing
one means a new version with an upcaster in the same module. Consumers read these shapes;
they never import another service's code."""
from shared.contracts import commission, console, engagement, orders, payout, referral  # noqa: F401  (registers)
from shared.events.catalog import catalog


def topic_of(event_type: str) -> str:
    """The topic an event type is published on (its owning service's stream)."""
    from shared.topics import OWNER_TOPIC

    cls = catalog.types()[event_type]
    return OWNER_TOPIC[cls.__module__.rsplit(".", 1)[-1]]
