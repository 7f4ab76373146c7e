"""The merchant's settings row."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.referral.domain.binding import Policy


@dataclass(frozen=True)
class MerchantSettings:
    enrolment_mode: str
    spend_threshold_fen: int
    binding_mode: str
    protection_window_days: int
    enrolment_mode_since: datetime
    updated_at: datetime
    updated_by: str | None = None

    @property
    def policy(self) -> Policy:
        return Policy(mode=self.binding_mode, window_days=self.protection_window_days)  # type: ignore[arg-type]


async def ensure(conn: asyncpg.Connection, *, enrolment_mode: str, spend_threshold_fen: int, binding_mode: str,
                 protection_window_days: int, now: datetime) -> None:
    """Write the defaults unless the row exists (operators' changes survive restarts)."""
    await conn.execute(
        """INSERT INTO merchant_settings (enrolment_mode, spend_threshold_fen, binding_mode, protection_window_days,
                                          enrolment_mode_since, updated_at, updated_by)
           VALUES ($1, $2, $3, $4, $5, $5, 'settings') ON CONFLICT (id) DO NOTHING""",
        enrolment_mode, spend_threshold_fen, binding_mode, protection_window_days, now,
    )


async def load(conn: asyncpg.Connection) -> MerchantSettings:
    row = await conn.fetchrow(
        """SELECT enrolment_mode, spend_threshold_fen, binding_mode, protection_window_days, enrolment_mode_since,
                  updated_at, updated_by FROM merchant_settings""")
    if row is None:
        raise RuntimeError("merchant_settings row missing (the service writes it at start)")
    return MerchantSettings(**dict(row))


async def update(conn: asyncpg.Connection, new: MerchantSettings) -> None:
    await conn.execute(
        """UPDATE merchant_settings SET enrolment_mode = $1, spend_threshold_fen = $2, binding_mode = $3,
                  protection_window_days = $4, enrolment_mode_since = $5, updated_at = $6, updated_by = $7""",
        new.enrolment_mode, new.spend_threshold_fen, new.binding_mode, new.protection_window_days,
        new.enrolment_mode_since, new.updated_at, new.updated_by,
    )
