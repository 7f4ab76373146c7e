"""`shared.db.create_pool` skips asyncpg's reset query on release (`shared.db.keep_session`).
That is only right while no code leaves session state on a pooled connection; this scan keeps
it so: advisory locks are transaction-scoped, settings are SET LOCAL, and every pooled LISTEN
is removed before its connection goes back."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CODE = [p for d in ("services", "shared", "simulation") for p in (ROOT / d).rglob("*.py")]


def _sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in CODE}


def test_the_code_is_there():
    assert len(CODE) > 50 and any(p.name == "db.py" for p in CODE)


def test_no_session_advisory_locks():
    bad = [str(p) for p, s in _sources().items() if re.search(r"pg_(try_)?advisory_lock(_shared)?\s*\(", s)]
    assert not bad, f"session-level advisory locks survive a pool release without the reset query: {bad}"


def test_no_session_level_settings():
    bad = []
    for p, s in _sources().items():
        for m in re.finditer(r"""execute\(\s*f?["']\s*SET\s+(?!LOCAL\b)(?!CONSTRAINTS\b)(?!TRANSACTION\b)""", s, re.I):
            bad.append(f"{p}:{s[:m.start()].count(chr(10)) + 1}")
        if "set_config(" in s and not re.search(r"set_config\([^)]*,\s*true\s*\)", s):
            bad.append(str(p))
    assert not bad, f"session settings survive a pool release without RESET ALL (use SET LOCAL): {bad}"


def test_every_listener_on_a_pooled_connection_is_removed():
    for p, s in _sources().items():
        if "add_listener(" not in s or "pool.acquire()" not in s:
            continue  # a dedicated connection (asyncpg.connect) is closed, not pooled
        assert "remove_listener(" in s, f"{p} listens on a pooled connection and never unlistens"


def test_the_scan_catches_what_it_looks_for():
    assert re.search(r"pg_(try_)?advisory_lock(_shared)?\s*\(", "SELECT pg_advisory_lock(1)")
    assert not re.search(r"pg_(try_)?advisory_lock(_shared)?\s*\(", "SELECT pg_try_advisory_xact_lock(1)")
    pat = r"""execute\(\s*f?["']\s*SET\s+(?!LOCAL\b)(?!CONSTRAINTS\b)(?!TRANSACTION\b)"""
    assert re.search(pat, 'await conn.execute("SET search_path = x")', re.I)
    assert not re.search(pat, "await conn.execute(f'SET LOCAL search_path = \"{s}\"')", re.I)
