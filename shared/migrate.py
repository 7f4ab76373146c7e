"""Apply one service's migrations and exit: the Kubernetes migration Job that runs before a
rollout (`python -m shared.migrate referral`). The service itself also migrates at start-up, so
this is a no-op when nothing is new; running it first means a bad migration stops the rollout
instead of crash-looping new pods beside the old ones."""
from __future__ import annotations

import importlib
import os
import sys

from shared import db
from shared.settings import CommonSettings

SERVICES = ("referral", "orders", "commission", "payout")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in SERVICES:
        print(f"usage: python -m shared.migrate {{{'|'.join(SERVICES)}}}", file=sys.stderr)
        return 2
    service = argv[0]
    migrations = importlib.import_module(f"services.{service}.main").MIGRATIONS
    schema = os.environ.get(f"{service.upper()}_SCHEMA") or service
    applied = db.migrate_sync(CommonSettings().database_url, schema, migrations)
    print(f"{service}: schema {schema}, {len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
