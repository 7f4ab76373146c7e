"""Bindings (customer -> promoter), refusals, and the team views over current bindings."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.referral.domain.binding import CurrentBinding

# Cap on the ancestor walk: far deeper than any real chain; only a guard against a corrupt table.
_MAX_DEPTH = 10_000


# -- the binding graph's locks ------------------------------------------------------------------
# A cycle is a fact about the whole graph: binds A->B and B->A, or A->B, B->C, C->A, each see no
# cycle alone. But a bind C->P can only close a cycle if C is somewhere above P, i.e. if someone
# is bound to C. So:
# - each user is a node with its own advisory lock (two-key form: a key space of its own). A bind
#   holds its customer's node exclusively (it changes that node's upline, and nobody may bind to
#   the customer meanwhile) and its promoter's node shared (nobody may move the promoter meanwhile);
# - a customer nobody is bound to (nearly every bind: a new user) cannot close a cycle, and stays
#   so while their node is held: such binds run at once, beside any other;
# - a customer with a team reads the promoter's chain under one lock per merchant (`_TEAM_BINDS`),
#   taken after the node locks. Every node above the promoter has a team (the node below it), so
#   whatever would move one of them waits for that lock too, and the promoter is held: the chain
#   is stable while it is read and the binding written.
# - every bind also holds, shared, the one lock per merchant that versions before 2026-12-02 took
#   exclusively for every bind: during a rolling deploy a bind of an old replica then runs alone, as
#   those replicas assume (taken last, after the node locks: whoever holds it waits for nothing).
# At most four locks per bind, whatever the chain's depth. Binds that would together close a
# ring (each customer's node read by another: A->B, B->A sent at once by two new users) wait for
# each other in a ring; PostgreSQL breaks it (deadlock_timeout) and the victim is run again
# (`api.deps.in_transaction`), now sees a team and the cycle, and is refused.
_NODE = "hashtext(current_schema() || '.bindings'), hashtext({})"
#: the lock every bind of an older version took exclusively (one key per schema)
ALL_BINDS_SHARED = "pg_advisory_xact_lock_shared(hashtext(current_schema() || '.bindings'))"
_TEAM_BINDS = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.bindings.team'))"


def lock_customer_sql(param: str) -> str:
    """The expression taking the customer node's lock (exclusive), for a statement's end."""
    return f"pg_advisory_xact_lock({_NODE.format(param)})"


def lock_read_sql(param: str) -> str:
    """The expression taking the promoter node's lock (shared)."""
    return f"pg_advisory_xact_lock_shared({_NODE.format(param)})"


async def lock_for_bind(conn: asyncpg.Connection, customer_id: str, promoter_id: str) -> None:
    """The customer's node, the promoter's, then the older versions' lock shared (as
    `arrivals.arrive` takes them for a bind)."""
    await conn.execute(f"SELECT {lock_customer_sql('$1')}, {lock_read_sql('$2')}, {ALL_BINDS_SHARED}",
                       customer_id, promoter_id)


@dataclass(frozen=True)
class BindingRow:
    customer_id: str
    promoter_id: str
    promoter_code: str
    source: str
    product_id: str | None
    mode: str
    bound_at: datetime
    superseded_at: datetime | None


_COLS = "customer_id, promoter_id, promoter_code, source, product_id, mode, bound_at, superseded_at"


async def current(conn: asyncpg.Connection, customer_id: str) -> BindingRow | None:
    row = await conn.fetchrow(f"SELECT {_COLS} FROM bindings WHERE customer_id = $1 AND superseded_at IS NULL", customer_id)
    return BindingRow(**dict(row)) if row else None


def as_current(b: BindingRow | None) -> CurrentBinding | None:
    return CurrentBinding(b.promoter_id, b.bound_at) if b else None


async def ancestors(conn: asyncpg.Connection, user_id: str) -> tuple[str, ...]:
    """`user_id`'s referrers all the way up through current bindings, nearest first."""
    rows = await conn.fetch(
        """WITH RECURSIVE up(who, depth) AS (
               SELECT promoter_id, 1 FROM bindings WHERE customer_id = $1 AND superseded_at IS NULL
               UNION
               SELECT b.promoter_id, up.depth + 1 FROM bindings b JOIN up ON b.customer_id = up.who
               WHERE b.superseded_at IS NULL AND up.depth < $2
           )
           SELECT who, min(depth) AS depth FROM up GROUP BY who ORDER BY depth""",
        user_id, _MAX_DEPTH,
    )
    return tuple(r["who"] for r in rows)


@dataclass(frozen=True)
class BindState:
    """What a bind must read under its locks, because other binds change it."""
    #: the customer's binding in force now, if any
    current: BindingRow | None
    #: the promoter's referrers all the way up through current bindings, nearest first
    ancestors: tuple[str, ...]
    #: a paid order of the customer's was seen
    has_paid_order: bool
    #: someone is bound to the customer (only then can this bind close a cycle)
    has_team: bool


async def bind_state(conn: asyncpg.Connection, customer_id: str, promoter_id: str | None) -> BindState:
    """The customer's current binding, the promoter's whole ancestor chain and the customer's
    paid-order flag, as a bind must decide on them. The caller holds the customer's node and
    the promoter's (`arrivals.arrive`, `lock_for_bind`); a customer with a team is read again
    under the merchant's lock for such binds, after which their chain cannot move."""
    state = await _read_state(conn, customer_id, promoter_id)
    if state.has_team:
        await conn.execute(_TEAM_BINDS)
        state = await _read_state(conn, customer_id, promoter_id)  # a snapshot after the lock
    return state


async def _read_state(conn: asyncpg.Connection, customer_id: str, promoter_id: str | None) -> BindState:
    row = await conn.fetchrow(
        f"""WITH RECURSIVE up(who, depth) AS (
                SELECT promoter_id, 1 FROM bindings WHERE customer_id = $2 AND superseded_at IS NULL
                UNION
                SELECT b.promoter_id, up.depth + 1 FROM bindings b JOIN up ON b.customer_id = up.who
                WHERE b.superseded_at IS NULL AND up.depth < $3
            ),
            chain AS (SELECT who, min(depth) AS depth FROM up GROUP BY who)
            SELECT (SELECT COALESCE(array_agg(who ORDER BY depth), '{{}}') FROM chain) AS ancestors,
                   EXISTS (SELECT 1 FROM customer_orders WHERE buyer_id = $1) AS has_paid_order,
                   EXISTS (SELECT 1 FROM bindings WHERE promoter_id = $1 AND superseded_at IS NULL) AS has_team,
                   cur.id IS NOT NULL AS has_current, {", ".join("cur." + c for c in _COLS.split(", "))}
            FROM (SELECT 1) one
            LEFT JOIN bindings cur ON cur.customer_id = $1 AND cur.superseded_at IS NULL""",
        customer_id, promoter_id, _MAX_DEPTH,
    )
    cur = BindingRow(**{c: row[c] for c in _COLS.split(", ")}) if row["has_current"] else None
    return BindState(current=cur, ancestors=tuple(row["ancestors"]), has_paid_order=row["has_paid_order"],
                     has_team=row["has_team"])


async def insert(conn: asyncpg.Connection, *, customer_id: str, promoter_id: str, promoter_code: str, source: str,
                 product_id: str | None, mode: str, bound_at: datetime, event_id: uuid.UUID) -> BindingRow:
    """The new current binding. Raises asyncpg.UniqueViolationError if the customer already has one."""
    row = await conn.fetchrow(
        f"""INSERT INTO bindings (customer_id, promoter_id, promoter_code, source, product_id, mode, bound_at, event_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_COLS}""",
        customer_id, promoter_id, promoter_code, source, product_id, mode, bound_at, event_id,
    )
    return BindingRow(**dict(row))


async def supersede(conn: asyncpg.Connection, customer_id: str, previous_promoter_id: str, at: datetime) -> bool:
    """Close the customer's current binding (only if it is still to `previous_promoter_id`)."""
    row = await conn.fetchrow(
        """UPDATE bindings SET superseded_at = $3
           WHERE customer_id = $1 AND promoter_id = $2 AND superseded_at IS NULL RETURNING 1""",
        customer_id, previous_promoter_id, at,
    )
    return row is not None


#: refusals stored and announced per (customer, promoter, reason) and UTC day; later ones are counted
REFUSALS_KEPT_PER_DAY = 3


async def count_refusal(conn: asyncpg.Connection, *, customer_id: str, promoter_id: str | None, reason: str,
                        refused_at: datetime) -> int:
    """Count one refusal; returns how many there were that day for the same customer, promoter
    and reason (this one included)."""
    return await conn.fetchval(
        """INSERT INTO binding_refusal_counts (customer_id, promoter, reason, day, refusals)
           VALUES ($1, $2, $3, ($4::timestamptz AT TIME ZONE 'UTC')::date, 1)
           ON CONFLICT (customer_id, promoter, reason, day) DO UPDATE SET refusals = binding_refusal_counts.refusals + 1
           RETURNING refusals""", customer_id, promoter_id or "", reason, refused_at)


async def record_refusal(conn: asyncpg.Connection, *, customer_id: str, promoter_code: str, promoter_id: str | None,
                         source: str, product_id: str | None, reason: str, refused_at: datetime,
                         event_id: uuid.UUID) -> None:
    await conn.execute(
        """INSERT INTO binding_refusals (customer_id, promoter_code, promoter_id, source, product_id, reason, refused_at, event_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        customer_id, promoter_code, promoter_id, source, product_id, reason, refused_at, event_id,
    )


async def refusals(conn: asyncpg.Connection, customer_id: str) -> list[dict]:
    rows = await conn.fetch(
        """SELECT promoter_code, promoter_id, source, product_id, reason, refused_at FROM binding_refusals
           WHERE customer_id = $1 ORDER BY refused_at, id""", customer_id)
    return [dict(r) for r in rows]


async def history(conn: asyncpg.Connection, customer_id: str) -> list[BindingRow]:
    rows = await conn.fetch(f"SELECT {_COLS} FROM bindings WHERE customer_id = $1 ORDER BY bound_at, id", customer_id)
    return [BindingRow(**dict(r)) for r in rows]


# -- team views ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TeamMember:
    customer_id: str
    nickname: str | None
    via_promoter_id: str | None
    via_nickname: str | None
    bound_at: datetime
    paid_orders: int
    paid_fen: int
    refunded_fen: int


async def team(conn: asyncpg.Connection, promoter_id: str, level: int, limit: int, offset: int) -> tuple[int, list[TeamMember]]:
    """Current level-1 (bound to the promoter) or level-2 (bound to one of the promoter's
    level-1 customers) customers, newest first, with their paid orders since they were bound."""
    if level == 1:
        base = """SELECT b.customer_id, b.bound_at, NULL::text AS via
                  FROM bindings b WHERE b.promoter_id = $1 AND b.superseded_at IS NULL"""
    else:
        base = """SELECT b2.customer_id, b2.bound_at, b1.customer_id AS via
                  FROM bindings b1 JOIN bindings b2 ON b2.promoter_id = b1.customer_id AND b2.superseded_at IS NULL
                  WHERE b1.promoter_id = $1 AND b1.superseded_at IS NULL"""
    total = await conn.fetchval(f"SELECT count(*) FROM ({base}) t", promoter_id)
    rows = await conn.fetch(
        f"""SELECT t.customer_id, t.bound_at, t.via, u.nickname, vu.nickname AS via_nickname,
                   COALESCE(s.n, 0) AS paid_orders, COALESCE(s.paid, 0) AS paid_fen, COALESCE(s.refunded, 0) AS refunded_fen
            FROM ({base}) t
            LEFT JOIN users u ON u.user_id = t.customer_id
            LEFT JOIN users vu ON vu.user_id = t.via
            LEFT JOIN LATERAL (
                SELECT count(*) AS n, sum(o.paid_fen) AS paid, sum(o.refunded_fen) AS refunded
                FROM customer_orders o WHERE o.buyer_id = t.customer_id AND o.paid_at >= t.bound_at
            ) s ON true
            ORDER BY t.bound_at DESC, t.customer_id LIMIT $2 OFFSET $3""",
        promoter_id, limit, offset,
    )
    return total, [
        TeamMember(customer_id=r["customer_id"], nickname=r["nickname"], via_promoter_id=r["via"],
                   via_nickname=r["via_nickname"], bound_at=r["bound_at"], paid_orders=r["paid_orders"],
                   paid_fen=int(r["paid_fen"]), refunded_fen=int(r["refunded_fen"]))
        for r in rows
    ]
