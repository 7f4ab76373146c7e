"""PostgreSQL plumbing: one asyncpg pool per service, bound to the service's own schema,
and forward-only SQL migrations run by yoyo."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

PLUMBING_MIGRATIONS = Path(__file__).parent / "migrations"
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def read_only_snapshot(conn: asyncpg.Connection) -> "asyncpg.transaction.Transaction":
    """A read-only repeatable-read transaction on `conn` (`async with`): every statement in it sees
    the same committed state, whatever commits meanwhile, and nothing in it can write. What every
    answer made of several reads uses (API reads, dashboards, the replay's starting point)."""
    return conn.transaction(isolation="repeatable_read", readonly=True)


def check_schema(schema: str) -> str:
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"bad schema name {schema!r}")
    return schema


async def keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing beyond what asyncpg always does (an open
    transaction is rolled back, client-side listeners dropped). asyncpg's default also sends
    `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` in a round trip of its own on
    every release (one per projector batch, relay cycle and API request), to undo session
    state this code never leaves behind: advisory locks are transaction-scoped
    (`pg_advisory_xact_lock`), settings are `SET LOCAL`, cursors live in transactions, and the
    one pooled LISTEN (the settlement scheduler) is removed before its release.
    `tests/unit/shared/test_pool_reset.py` keeps the code to that."""


async def create_pool(dsn: str, schema: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections see `schema` first, so store SQL stays unqualified and the
    same code can write a fresh replay schema."""
    check_schema(schema)
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        reset=keep_session,
        server_settings={"search_path": f"{schema},public", "application_name": f"fenxiao-{schema}"},
    )


def _yoyo_url(dsn: str, schema: str) -> str:
    """yoyo's URL for `dsn`, keeping its query (sslmode, sslrootcert, sslcert, sslkey, ...: yoyo
    hands them to psycopg), so migrations connect as securely as the service does."""
    parts = urlsplit(dsn)
    scheme = "postgresql+psycopg"
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    query = urlencode([*kept, ("schema", schema)])
    return urlunsplit((scheme, parts.netloc, parts.path, query, ""))


def migrate_sync(dsn: str, schema: str, migrations_dir: Path) -> list[str]:
    """Create `schema` if needed and apply the plumbing migrations (projector offsets,
    applied-event ids, outbox) and then the service's own. Returns the ids applied now;
    a second run applies nothing."""
    import psycopg
    from yoyo import get_backend, read_migrations

    check_schema(schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        # only when missing: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when
        # the schema exists, and in production a service's role owns its schema and nothing more
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
            # replicas starting together: two concurrent CREATE SCHEMA IF NOT EXISTS can both
            # insert and one fails on pg_namespace's unique index, so they take turns
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('fenxiao-create-schema:' || %s))", (schema,))
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    backend = get_backend(_yoyo_url(dsn, schema), migration_table="_yoyo_migration")
    migrations = read_migrations(str(PLUMBING_MIGRATIONS), str(migrations_dir))
    with backend.lock():
        todo = backend.to_apply(migrations)
        backend.apply_migrations(todo)
    return [m.id for m in todo]


async def migrate(dsn: str, schema: str, migrations_dir: Path) -> list[str]:
    return await asyncio.to_thread(migrate_sync, dsn, schema, migrations_dir)


async def drop_schema(dsn: str, schema: str) -> None:
    check_schema(schema)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def rows_affected(status: str) -> int:
    """The row count of an asyncpg command status ('UPDATE 3', 'DELETE 0', 'INSERT 0 1')."""
    return int(status.split()[-1])
