"""One root error; each subclass names the rule that was broken (mapped to HTTP in main.py)."""
from __future__ import annotations


class EngagementError(Exception):
    status = 422


class NotFoundError(EngagementError):
    status = 404


class PerkNotFoundError(NotFoundError):
    pass


class AnnouncementNotFoundError(NotFoundError):
    pass


class ForbiddenError(EngagementError):
    status = 403


class PerkAlreadyClaimedError(EngagementError):
    """The perk was claimed before, with another idempotency key."""

    status = 409


class IdempotencyKeyRequiredError(EngagementError):
    status = 400


class UnknownNoticeKindError(EngagementError):
    pass


class BadTemplateError(EngagementError):
    """A subscribe-message template mapping WeChat would refuse (unknown field type or value)."""


class BadPeriodError(EngagementError):
    pass
