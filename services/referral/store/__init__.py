"""SQL as functions taking an asyncpg connection; none of them commits (the caller owns the
transaction). Table names are unqualified: the pool's search_path is the service schema."""
