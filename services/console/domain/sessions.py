"""Console sessions: a random token in an HttpOnly cookie, only its SHA-256 stored; an idle
timeout and an absolute lifetime; a CSRF token per session that every form carries."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

COOKIE = "fx_console"
LOGIN_CSRF_COOKIE = "fx_console_login"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Lifetime:
    idle: timedelta
    absolute: timedelta

    def expiry(self, created_at: datetime, now: datetime) -> datetime:
        """When a session used at `now` expires: idle timeout, never past the absolute lifetime."""
        return min(now + self.idle, created_at + self.absolute)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected, given)  # type: ignore[arg-type]
