"""The erasure route's plumbing, the same in every service that holds personal data (docs/audit.md,
"Retention and erasure"): the operator's request, the person id in the path, and the record of the
erasure in the service's own `personal_data_erasures` table. What each service clears stays in its
own `api/erasure.py`."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

#: `POST /v1/admin/persons/{person_id}/erase`
PersonId = Annotated[str, Path(min_length=1, max_length=128)]


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=3, max_length=200)


async def record_erasure(conn: asyncpg.Connection, person_id: str, at: datetime, by: str, reason: str) -> None:
    """Who erased the person, when and why (the first erasure is kept; a repeat changes nothing)."""
    await conn.execute("""INSERT INTO personal_data_erasures (person_id, erased_at, erased_by, reason)
                          VALUES ($1, $2, $3, $4) ON CONFLICT (person_id) DO NOTHING""",
                       person_id, at, by, reason)
