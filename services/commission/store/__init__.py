"""SQL as functions taking an asyncpg connection; the caller owns the transaction."""
