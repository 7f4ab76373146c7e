"""Events published by the payout service (topic shared.topics.PAYOUT_EVENTS), keyed by promoter."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from shared.events import EventPayload, register


@register
class WithdrawalRequested(EventPayload):
    """The amount is reserved from the available balance from this moment. `amount_fen` is the
    whole amount (what every balance moves by); the WeChat transfer is `amount - fee - tax withheld`."""

    event_type = "WithdrawalRequested"
    key_field = "promoter_id"
    withdrawal_id: str
    promoter_id: str
    amount_fen: int = Field(gt=0)
    fee_fen: int = Field(ge=0)
    requested_at: datetime
    #: individual income tax withheld on this payment (cumulative method, docs/tax.md), fixed at the
    #: request and kept out of the transfer. Added compatibly: events written before it carry none
    #: and withheld none (0), readers that do not know it ignore it.
    tax_withheld_fen: int = Field(0, ge=0)

    @property
    def transfer_fen(self) -> int:
        """What the WeChat transfer pays into the promoter's WeChat balance."""
        return self.amount_fen - self.fee_fen - self.tax_withheld_fen


@register
class WithdrawalApproved(EventPayload):
    event_type = "WithdrawalApproved"
    key_field = "promoter_id"
    withdrawal_id: str
    promoter_id: str
    automatic: bool
    approved_by: str | None = None
    approved_at: datetime


@register
class WithdrawalRejected(EventPayload):
    """Releases the reservation."""

    event_type = "WithdrawalRejected"
    key_field = "promoter_id"
    withdrawal_id: str
    promoter_id: str
    amount_fen: int = Field(gt=0)
    reason: str
    rejected_by: str
    rejected_at: datetime


@register
class WithdrawalTransferCreated(EventPayload):
    event_type = "WithdrawalTransferCreated"
    key_field = "promoter_id"
    withdrawal_id: str
    promoter_id: str
    out_bill_no: str
    transfer_bill_no: str | None = None
    state: str
    package_info: str | None = None
    created_at: datetime


@register
class WithdrawalPaid(EventPayload):
    """The WeChat transfer succeeded: reserved money leaves as withdrawn (the whole `amount_fen`);
    the promoter received `amount - fee - tax withheld` in their WeChat balance."""

    event_type = "WithdrawalPaid"
    key_field = "promoter_id"
    withdrawal_id: str
    promoter_id: str
    amount_fen: int = Field(gt=0)
    fee_fen: int = Field(ge=0)
    out_bill_no: str
    paid_at: datetime
    #: income tax withheld on this payment and kept out of the transfer (0 in events written before the field)
    tax_withheld_fen: int = Field(0, ge=0)

    @property
    def transfer_fen(self) -> int:
        """What the WeChat transfer paid into the promoter's WeChat balance."""
        return self.amount_fen - self.fee_fen - self.tax_withheld_fen


@register
class WithdrawalReleased(EventPayload):
    """The transfer failed, was cancelled or lapsed unconfirmed: the reservation returns."""

    event_type = "WithdrawalReleased"
    key_field = "promoter_id"
    withdrawal_id: str
    promoter_id: str
    amount_fen: int = Field(gt=0)
    out_bill_no: str | None = None
    reason: Literal["transfer_failed", "transfer_cancelled", "overdue_close"] | str
    released_at: datetime
