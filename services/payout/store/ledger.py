"""SQL of the available-balance ledger. Functions take a connection and never commit."""
from __future__ import annotations

import asyncpg

from services.payout.domain.ledger import LedgerDelta

_COLUMNS = "promoter_id, available_fen, reserved_fen, withdrawn_fen, settled_fen, reversed_fen"


async def apply_deltas(conn: asyncpg.Connection, deltas: dict[str, LedgerDelta]) -> None:
    """Add each promoter's change, creating rows as needed (sorted: a stable lock order)."""
    if not deltas:
        return
    ids = sorted(deltas)
    await conn.execute(
        f"""INSERT INTO balances ({_COLUMNS})
            SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
            ON CONFLICT (promoter_id) DO UPDATE SET
              available_fen = balances.available_fen + EXCLUDED.available_fen,
              reserved_fen  = balances.reserved_fen  + EXCLUDED.reserved_fen,
              withdrawn_fen = balances.withdrawn_fen + EXCLUDED.withdrawn_fen,
              settled_fen   = balances.settled_fen   + EXCLUDED.settled_fen,
              reversed_fen  = balances.reversed_fen  + EXCLUDED.reversed_fen,
              updated_at    = now()""",
        ids,
        [deltas[i].available_fen for i in ids], [deltas[i].reserved_fen for i in ids],
        [deltas[i].withdrawn_fen for i in ids], [deltas[i].settled_fen for i in ids],
        [deltas[i].reversed_fen for i in ids],
    )


async def lock_balance(conn: asyncpg.Connection, promoter_id: str) -> asyncpg.Record | None:
    """The promoter's balance row, locked until the transaction ends (None: never credited).
    Every withdrawal of one promoter queues here, on any instance."""
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM balances WHERE promoter_id = $1 FOR UPDATE", promoter_id)


async def reserve(conn: asyncpg.Connection, promoter_id: str, amount_fen: int) -> bool:
    """Move `amount_fen` from available to reserved only if it is there; False otherwise.
    The condition is in the UPDATE itself, never read-then-write."""
    row = await conn.fetchrow(
        """UPDATE balances SET available_fen = available_fen - $2, reserved_fen = reserved_fen + $2, updated_at = now()
           WHERE promoter_id = $1 AND available_fen >= $2 RETURNING promoter_id""",
        promoter_id, amount_fen,
    )
    return row is not None


async def release(conn: asyncpg.Connection, promoter_id: str, amount_fen: int) -> None:
    """A reservation returns to available (rejection, failed or lapsed transfer)."""
    await _move(conn, promoter_id, LedgerDelta(available_fen=amount_fen, reserved_fen=-amount_fen))


async def pay(conn: asyncpg.Connection, promoter_id: str, amount_fen: int) -> None:
    """A reservation leaves as withdrawn (the transfer succeeded)."""
    await _move(conn, promoter_id, LedgerDelta(reserved_fen=-amount_fen, withdrawn_fen=amount_fen))


async def _move(conn: asyncpg.Connection, promoter_id: str, d: LedgerDelta) -> None:
    status = await conn.execute(
        """UPDATE balances SET available_fen = available_fen + $2, reserved_fen = reserved_fen + $3,
                  withdrawn_fen = withdrawn_fen + $4, updated_at = now()
           WHERE promoter_id = $1""",
        promoter_id, d.available_fen, d.reserved_fen, d.withdrawn_fen,
    )
    if status != "UPDATE 1":  # a reservation without a balance row: the ledger is broken, stop
        raise RuntimeError(f"no balance row for promoter {promoter_id}")


async def get_balance(conn: asyncpg.Connection, promoter_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {_COLUMNS} FROM balances WHERE promoter_id = $1", promoter_id)


async def all_balances(conn: asyncpg.Connection, promoter_ids: list[str] | None = None) -> dict[str, tuple[int, int, int]]:
    """promoter -> (available, reserved, withdrawn), optionally for some promoters only."""
    if promoter_ids is None:
        rows = await conn.fetch("SELECT promoter_id, available_fen, reserved_fen, withdrawn_fen FROM balances")
    else:
        rows = await conn.fetch(
            "SELECT promoter_id, available_fen, reserved_fen, withdrawn_fen FROM balances WHERE promoter_id = ANY($1::text[])",
            promoter_ids)
    return {r["promoter_id"]: (r["available_fen"], r["reserved_fen"], r["withdrawn_fen"]) for r in rows}
