from shared.events.envelope import Envelope, EventPayload, derive_event_id, new_event
from shared.events.catalog import catalog, register, NewerVersionError, UnknownEventError

__all__ = ["Envelope", "EventPayload", "derive_event_id", "new_event", "catalog", "register", "NewerVersionError",
           "UnknownEventError"]
