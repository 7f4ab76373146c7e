"""Events published by the operators' console (topic shared.topics.CONSOLE_EVENTS).

Every action an operator takes in the console (a login, a plan publication, a decision, a
referrer change, an audit run) is recorded as one `OperatorActionRecorded`, written to the
console's outbox in the transaction that records it, keyed by the operator."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from shared.events import EventPayload, register

OperatorRole = Literal["operator", "finance", "plan_admin", "auditor", "viewer"]


@register
class OperatorActionRecorded(EventPayload):
    """An operator did something through the console (or was refused doing it)."""

    event_type = "OperatorActionRecorded"
    key_field = "operator"
    action_id: str
    operator: str
    role: OperatorRole
    #: e.g. login, logout, plan.publish, application.decide, promoter.status, customer.rebind,
    #: withdrawal.decide, audit.run, withdrawals.export
    action: str = Field(max_length=64)
    #: what the action was about (a plan version, a promoter, a withdrawal id...)
    target: str | None = Field(default=None, max_length=256)
    reason: str | None = Field(default=None, max_length=500)
    #: ok, refused (the service said no, with its reason in `detail`), failed (login)
    outcome: Literal["ok", "refused", "failed"]
    detail: dict[str, Any] = Field(default_factory=dict)
    at: datetime
