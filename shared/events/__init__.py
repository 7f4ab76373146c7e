from shared.events.envelope import Envelope, EventPayload, derive_event_id, new_event
from shared.events.catalog import catalog, register, UnknownEventError

__all__ = ["Envelope", "EventPayload", "derive_event_id", "new_event", "catalog", "register", "UnknownEventError"]
