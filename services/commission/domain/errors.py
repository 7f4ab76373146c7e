"""One root error per service; each subclass names the rule that was broken."""
from __future__ import annotations


class CommissionError(Exception):
    """Root of every refusal the commission service makes (mapped to 4xx)."""

    code: str | None = None
    status: int = 422

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class PlanRefusedError(CommissionError):
    """A plan that could pay a third level, exceed the cap or is malformed is refused when saved."""

    code = "plan_refused"


class NoPlanError(CommissionError):
    code = "no_plan"
    status = 404


class BadCursorError(CommissionError):
    code = "bad_cursor"
    status = 400
