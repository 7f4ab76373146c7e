"""A user's arrival through a share: what a bind reads before it takes the bindings lock."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.referral.domain.promoters import Promoter
from services.referral.store.bindings import ALL_BINDS_SHARED, lock_customer_sql, lock_read_sql
from services.referral.store.merchant import MerchantSettings

_MS_COLS = ("enrolment_mode", "spend_threshold_fen", "binding_mode", "protection_window_days", "enrolment_mode_since",
            "updated_at", "updated_by")
_P_COLS = ("user_id", "code", "status", "enrolled_by", "enrolled_at", "status_reason", "suspended_until",
           "status_changed_at")


@dataclass(frozen=True)
class Arrival:
    settings: MerchantSettings
    #: the promoter the code resolves to (None: no such code)
    promoter: Promoter | None
    #: the user was already known before this visit
    known: bool


async def arrive(conn: asyncpg.Connection, customer_id: str, promoter_code: str | None, seen_at: datetime, *,
                 nickname: str | None = None, avatar_url: str | None = None) -> Arrival:
    """Record the visit (as `users.touch` does), read the merchant settings and the promoter
    by code (none of this depends on other binds), then lock the customer's node and the
    promoter's (`store.bindings`: exclusive, shared) and the older versions' lock (shared): one
    statement, so no lock costs a round trip of its own. What must be read under the locks is read
    by the next statement (`bindings.bind_state`: this one's snapshot predates them)."""
    row = await conn.fetchrow(
        f"""WITH visit AS (
                INSERT INTO users AS u (user_id, nickname, avatar_url, first_seen_at, last_seen_at)
                VALUES ($1, $3, $4, $5, $5)
                ON CONFLICT (user_id) DO UPDATE SET
                    nickname = COALESCE(EXCLUDED.nickname, u.nickname),
                    avatar_url = COALESCE(EXCLUDED.avatar_url, u.avatar_url),
                    last_seen_at = GREATEST(u.last_seen_at, EXCLUDED.last_seen_at)
                RETURNING (xmax <> 0) AS known
            )
            SELECT visit.known, {", ".join("ms." + c for c in _MS_COLS)},
                   p.user_id IS NOT NULL AS has_promoter, {", ".join(f"p.{c} AS p_{c}" for c in _P_COLS)}
            FROM visit CROSS JOIN merchant_settings ms
            LEFT JOIN promoters p ON p.code = $2
            -- the locks are evaluated on the visit's row, i.e. only once the user's row is ours:
            -- never hold a node lock while waiting for a row lock; the customer's node first
            CROSS JOIN LATERAL (SELECT {lock_customer_sql('$1')} AS held WHERE visit.known IS NOT NULL) lock_c
            LEFT JOIN LATERAL (SELECT {lock_read_sql('p.user_id')} AS held
                               WHERE p.user_id IS NOT NULL AND lock_c.held IS NOT NULL) lock_p ON true
            -- last, the lock older versions took for every bind (shared: see store.bindings)
            CROSS JOIN LATERAL (SELECT {ALL_BINDS_SHARED} AS held
                                WHERE lock_c.held IS NOT NULL AND (lock_p.held IS NOT NULL OR p.user_id IS NULL)) lock_all""",
        customer_id, promoter_code, nickname, avatar_url, seen_at,
    )
    if row is None:
        raise RuntimeError("merchant_settings row missing (the service writes it at start)")
    promoter = Promoter(**{c: row["p_" + c] for c in _P_COLS}) if row["has_promoter"] else None
    return Arrival(settings=MerchantSettings(**{c: row[c] for c in _MS_COLS}), promoter=promoter,
                   known=bool(row["known"]))
