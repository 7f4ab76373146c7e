"""The withdrawals CSV for finance (UTF-8 with a BOM so that spreadsheet programs show Chinese)."""
from __future__ import annotations

import csv
import io
from typing import Any, Iterable

HEADER = ("withdrawal_id", "promoter_id", "amount_fen", "fee_fen", "tax_withheld_fen", "net_fen", "status", "automatic", "requested_at",
          "decided_by", "decided_at", "reject_reason", "out_bill_no", "transfer_bill_no", "bill_state", "fail_reason",
          "release_reason", "finished_at")


def _cell(v: Any) -> str:
    s = "" if v is None else str(v)
    # a cell starting with = + - @ would be a formula in a spreadsheet: quote it as text
    return "'" + s if s[:1] in ("=", "+", "-", "@") and not s.lstrip("-").isdigit() else s


def withdrawals_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADER)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in HEADER])
    return "\ufeff" + buf.getvalue()
