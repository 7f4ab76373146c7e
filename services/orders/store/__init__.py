"""SQL functions taking an asyncpg connection (never committing) and the migrations."""
from pathlib import Path

MIGRATIONS = Path(__file__).parent / "migrations"
