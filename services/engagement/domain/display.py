"""How money and people are shown: fen as yuan, nicknames masked as in the team view."""
from __future__ import annotations


def format_fen(amount_fen: int) -> str:
    """¥12.34 from 1234 fen; integer arithmetic only."""
    if amount_fen < 0:
        return "-" + format_fen(-amount_fen)
    yuan, fen = divmod(amount_fen, 100)
    return f"¥{yuan}.{fen:02d}"


def mask_nickname(nickname: str | None) -> str:
    """Keep the first character, hide the rest: 张三 -> 张*, 张 -> * (the team view's rule)."""
    if not nickname:
        return "*"
    chars = list(nickname.strip()) or ["*"]
    if len(chars) == 1:
        return "*"
    return chars[0] + "*" * (len(chars) - 1)
