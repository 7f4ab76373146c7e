"""Operator accounts from the command line:
`python -m services.console.accounts add <username> <role>` (password from CONSOLE_NEW_PASSWORD
or asked on the terminal). Roles: operator, finance, plan_admin, auditor, viewer."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from services.console.domain.passwords import hash_password
from services.console.domain.roles import ROLES
from services.console.main import MIGRATIONS
from services.console.settings import ConsoleSettings
from services.console.store import accounts
from shared import db


async def add(username: str, role: str, password: str, settings: ConsoleSettings) -> None:
    await db.migrate(settings.database_url, settings.db_schema, MIGRATIONS)
    pool = await db.create_pool(settings.database_url, settings.db_schema, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await accounts.upsert_operator(conn, username, role, hash_password(password))
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.console.accounts")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="create or update an operator (a new password re-enables a disabled one)")
    a.add_argument("username")
    a.add_argument("role", choices=ROLES)
    args = ap.parse_args(argv)
    password = os.environ.get("CONSOLE_NEW_PASSWORD") or getpass.getpass("password: ")
    asyncio.run(add(args.username, args.role, password, ConsoleSettings()))
    print(f"operator {args.username} ({args.role}) saved", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
