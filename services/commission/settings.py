"""Commission settings (env prefix COMMISSION_)."""
from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import CommonSettings


class CommissionSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="COMMISSION_", extra="ignore")

    #: PostgreSQL schema (a fresh one for tests, the kill test and the replay)
    db_schema: str = Field("commission", validation_alias="COMMISSION_SCHEMA")
    port: int = 8103
    #: the settlement scheduler's longest sleep when nothing wakes it
    settle_poll_s: float = 1.0
    settle_batch: int = 1000
    #: an order waits until the referral stream was read this far past its paid_at (or to its end)
    order_wait_skew_s: float = 1.0
    #: tiers move at epoch boundaries: a tier reached by the contributions of one epoch applies
    #: to orders paid in the following epochs (every worker agrees on where the boundaries are)
    tier_epoch_s: float = 3600.0
    #: how often a worker with held orders looks whether they may go when nothing else comes
    held_poll_s: float = 0.1
    #: tests and demos: the settlement scheduler's clock runs this many seconds ahead (freeze days pass at once)
    clock_offset_s: float = 0.0
    #: records per projection batch (PROJECTOR_BATCH_MAX; 2000 elsewhere): a 2,000-order batch fans out into
    #: ~6,700 accruals, events and rows held at once, which took a process past 200 MiB in a backlog
    #: (bench: peak RSS 191-216 MiB at 2,000, 177-182 at 1,000, same orders/s within the noise)
    projector_batch_max: int = Field(1000, validation_alias="PROJECTOR_BATCH_MAX")
