"""The re-deriving audit's phase (engineer i15's addition; kept apart from bench/phases.py): runs
`services.commission.audit.rederive` on the accrual run's live schema, without writing the
re-derivation to a schema, and records records read per second (the log's source events, our plan
events and our published money events) and whether it found the live service equal."""
from __future__ import annotations

from typing import Any


async def rederive(ctx: Any) -> None:
    from services.commission.audit.rederive import rederive as run
    from services.commission.settings import CommissionSettings

    settings = CommissionSettings(kafka_bootstrap_servers=ctx.bootstrap, database_url=ctx.dsn)
    r = await run(settings, ctx.schema, progress=False)
    ctx.results["rederive"] = {"records": r.events_read, "source_events": r.source_events, "accruals": r.accruals,
                               "seconds": round(r.seconds, 2), "read_seconds": round(r.read_seconds, 2),
                               "records_per_s": round(r.events_per_s, 1), "equal": r.equal,
                               "differences": len(r.differences)}
    ctx.log(f"rederive: {r.events_read} records ({r.source_events} source events, {r.accruals} accruals re-derived) in "
            f"{r.seconds:.1f}s = {r.events_per_s:,.0f} records/s; {'EQUAL' if r.equal else f'{len(r.differences)} DIFFERENCES'}")
