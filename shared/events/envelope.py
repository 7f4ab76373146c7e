"""The envelope every event travels in: identity, type and schema version, time,
the aggregate key, causation and correlation. JSON on the wire."""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

# Namespace for ids derived from a causing event; fixed forever, changing it breaks dedupe.
_DERIVED_NS = uuid.UUID("6f1c1c52-8f0e-4c39-9a54-2f3a4f0e7d11")


class EventPayload(BaseModel):
    """Base of every event body. Subclasses set `event_type` and `version`; they are frozen
    because an event, once written, is never changed. Readers are tolerant: a field this code
    does not know (a producer upgraded first, adding an optional field) is ignored, never refused."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    #: which payload field is the aggregate key (keeps one aggregate on one partition)
    key_field: ClassVar[str]

    def aggregate_key(self) -> str:
        return str(getattr(self, self.key_field))


class Envelope(BaseModel):
    #: tolerant reader: envelope fields added by a newer producer are ignored
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    event_type: str
    version: int = Field(ge=1)
    occurred_at: datetime
    key: str = Field(min_length=1)
    causation_id: uuid.UUID | None = None
    correlation_id: uuid.UUID | None = None
    payload: dict[str, Any]

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Envelope":
        return cls.model_validate_json(raw)


def validated_envelope(fields: dict[str, Any]) -> Envelope:
    """The Envelope of values already validated against its own fields' types and constraints
    (the catalog's one-step parse; fields with a default may be absent): what `model_construct`
    does, without its per-field loop (which would cost a third of the parse)."""
    fields_set = set(fields)
    if len(fields) < len(_DEFAULTS):  # in the fields' order: the order to_bytes writes them in
        fields = {name: fields[name] if name in fields else default for name, default in _DEFAULTS}
    env = _new(Envelope)
    _set(env, "__dict__", fields)
    _set(env, "__pydantic_fields_set__", fields_set)
    _set(env, "__pydantic_extra__", None)
    _set(env, "__pydantic_private__", None)
    return env


_new = object.__new__
_set = object.__setattr__  # pydantic's own way past a frozen model's __setattr__
#: every field with its default (None where it has none: those are always validated)
_DEFAULTS = [(name, None if f.is_required() else f.default) for name, f in Envelope.model_fields.items()]


# `to_bytes` writes the type and version side by side near the start: a regex over the first
# bytes finds them without parsing the JSON (other layouts are not peeked: no hint, two steps).
_PEEK = re.compile(rb'"event_type":"([^"\\]{1,200})","version":([0-9]{1,9})[,}]')
#: the few (type, version) pairs seen, by the bytes that spelled them (saves a decode per record)
_peeked: dict[bytes, tuple[str, int]] = {}


def peek_type(raw: bytes) -> tuple[str, int] | None:
    """The (event type, version) an envelope's bytes seem to carry, or None. Only a hint for
    choosing a parser: the body itself is what is validated."""
    m = _PEEK.search(raw, 0, 400)
    if m is None:
        return None
    hint = _peeked.get(m[0])
    if hint is None:
        hint = (m[1].decode(errors="replace"), int(m[2]))
        if len(_peeked) < 1000:  # bounded, whatever a stream spells
            _peeked[m[0]] = hint
    return hint


def derive_event_id(cause_id: uuid.UUID, *parts: object) -> uuid.UUID:
    """Deterministic id for an event caused by another: reprocessing the cause yields the same
    id, so a consumer drops the repeat."""
    return uuid.uuid5(_DERIVED_NS, f"{cause_id}:" + ":".join(str(p) for p in parts))


def new_event(
    payload: EventPayload,
    *,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    cause: Envelope | None = None,
    correlation_id: uuid.UUID | None = None,
) -> Envelope:
    """Wrap a payload. With `cause`, causation and correlation are carried over from it."""
    if cause is not None:
        correlation_id = correlation_id or cause.correlation_id or cause.event_id
    eid = event_id or uuid.uuid4()
    return Envelope(
        event_id=eid,
        event_type=payload.event_type,
        version=payload.version,
        occurred_at=occurred_at or datetime.now(timezone.utc),
        key=payload.aggregate_key(),
        causation_id=cause.event_id if cause is not None else None,
        correlation_id=correlation_id or eid,
        payload=payload.model_dump(mode="json"),
    )
