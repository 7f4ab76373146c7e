"""Registry of event payload classes by (type, version), with upcasters so that every
earlier version of an event still parses into the current class."""
from __future__ import annotations

from typing import Any, Callable

from shared.events.envelope import Envelope, EventPayload


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


catalog = Catalog()
register = catalog.register
