"""How money and people are shown to users: fen as yuan, nicknames masked in others' views.

Why here (shared/ is plumbing only): these are presentation helpers, not rules of the
distribution business. They decide nothing, hold no state and read no service's data;
like the log redaction in shared.telemetry they only format a value for display. Referral
(team views, posters) and engagement (leaderboards, notices) must show money and masked
nicknames the same way, so one copy lives here instead of one per service (which drifted)."""
from __future__ import annotations


def format_fen(amount_fen: int) -> str:
    """¥12.34 from 1234 fen; integer arithmetic only (no float ever touches money)."""
    if amount_fen < 0:
        return "-" + format_fen(-amount_fen)
    yuan, fen = divmod(amount_fen, 100)
    return f"¥{yuan}.{fen:02d}"


def mask_nickname(nickname: str | None) -> str:
    """Keep the first character, hide the rest: 张三 -> 张*, 张三丰 -> 张**, 张 -> *."""
    if not nickname:
        return "*"
    chars = list(nickname.strip()) or ["*"]
    if len(chars) == 1:
        return "*"
    return chars[0] + "*" * (len(chars) - 1)
