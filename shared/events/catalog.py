"""Registry of event payload classes by (type, version), with upcasters so that every
earlier version of an event still parses into the current class."""
from __future__ import annotations

from typing import Annotated, Any, Callable, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict  # pydantic needs typing_extensions' TypedDict before 3.12

from shared.events.envelope import Envelope, EventPayload, validated_envelope


class UnknownEventError(ValueError):
    """The event cannot be read by this code: an unknown type, or a version it has no way to read."""


class NewerVersionError(UnknownEventError):
    """A version newer than this code knows (a producer was upgraded first), or an older one
    without an upcaster. Not a poison message: the partition waits for code that can read it."""


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Catalog:
    def __init__(self) -> None:
        self._current: dict[str, type[EventPayload]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        #: (current version, one-step validator) by type, built on first use (a few ms each)
        self._one_step: dict[str, tuple[int, Callable[[bytes], dict[str, Any]]]] = {}

    def register(self, cls: type[EventPayload]) -> type[EventPayload]:
        if cls.event_type in self._current and self._current[cls.event_type] is not cls:
            raise ValueError(f"event type {cls.event_type} registered twice")
        self._current[cls.event_type] = cls
        return cls

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function turning version N's payload dict into version N+1's."""

        def deco(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return deco

    def types(self) -> dict[str, type[EventPayload]]:
        return dict(self._current)

    def knows(self, event_type: str) -> bool:
        return event_type in self._current

    def payload(self, env: Envelope) -> EventPayload:
        """Parse an envelope's payload into the current class, upcasting older versions.
        Raises UnknownEventError or pydantic.ValidationError."""
        cls = self._current.get(env.event_type)
        if cls is None:
            raise UnknownEventError(f"unknown event type {env.event_type!r}")
        data, version = env.payload, env.version
        if version > cls.version:
            raise NewerVersionError(f"{env.event_type} v{version} is newer than this code (v{cls.version})")
        while version < cls.version:
            up = self._upcasters.get((env.event_type, version))
            if up is None:
                raise NewerVersionError(f"no upcaster for {env.event_type} v{version}")
            data, version = up(dict(data)), version + 1
        return cls.model_validate(data)

    def parse_current(self, raw: bytes, event_type: str, version: int | None = None) -> tuple[Envelope, EventPayload] | None:
        """Envelope and typed payload in one JSON validation, for an event that claims (by its
        headers or a peek) to be the current version of a known type. None when it does not, or
        when the body is not exactly that: the caller then takes the two-step path
        (`Envelope.from_bytes` and `payload`), which upcasts, halts or names what is wrong."""
        one = self._one_step.get(event_type)
        if one is None:
            cls = self._current.get(event_type)
            if cls is None:
                return None
            one = self._one_step[event_type] = (cls.version, _one_step_adapter(cls).validate_json)
        current, validate = one
        if version is not None and version != current:
            return None
        try:
            fields = validate(raw)
        except ValidationError:
            return None
        payload = fields.pop("typed_payload")
        return validated_envelope(fields), payload


def _one_step_adapter(cls: type[EventPayload]) -> TypeAdapter:
    """A validator of a whole envelope of `cls`'s current version: the Envelope's own fields
    (same types and constraints, so the result is what Envelope.from_bytes gives), its type and
    version pinned to `cls`'s (another event's body fails instead of being mis-typed), and the
    payload read twice from the same JSON value: as the dict the Envelope keeps (the original
    fields, unknown ones included, for to_bytes and re-publishing) and as `cls`."""
    fields: dict[str, Any] = {}
    for name, info in Envelope.model_fields.items():
        tp: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        if name == "event_type":
            tp = Literal[cls.event_type]
        elif name == "version":
            tp = Literal[cls.version]
        fields[name] = tp if info.is_required() else NotRequired[tp]
    fields["typed_payload"] = Annotated[cls, Field(validation_alias="payload")]
    shape: Any = TypedDict(f"{cls.__name__}Envelope", fields)  # type: ignore[operator]
    shape.__pydantic_config__ = ConfigDict(extra=Envelope.model_config.get("extra", "ignore"))
    return TypeAdapter(shape)


catalog = Catalog()
register = catalog.register
