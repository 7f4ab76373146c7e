"""Collections are timed into fenxiao_gc_pause_seconds, and long ones are logged."""
from __future__ import annotations

import gc

from structlog.testing import capture_logs

from shared import telemetry


def _count(gen: int) -> float:
    for metric in telemetry.GC_PAUSE.collect():
        for s in metric.samples:
            if s.name.endswith("_count") and s.labels == {"generation": str(gen)}:
                return s.value
    return 0.0


def test_every_collection_is_timed_and_a_long_one_is_logged(monkeypatch):
    telemetry.observe_gc_pauses()
    telemetry.observe_gc_pauses()  # idempotent
    try:
        assert gc.callbacks.count(telemetry._on_gc) == 1
        before = _count(2)
        gc.collect()
        assert _count(2) == before + 1
        monkeypatch.setattr(telemetry, "GC_PAUSE_LOG_S", 0.0)
        with capture_logs() as logs:
            gc.collect(1)
        assert any(e["event"] == "gc_pause" and e["generation"] == 1 for e in logs)
        monkeypatch.setattr(telemetry, "GC_PAUSE_LOG_S", 10.0)
        with capture_logs() as logs:
            gc.collect()
        assert not [e for e in logs if e["event"] == "gc_pause"]
    finally:
        gc.callbacks.remove(telemetry._on_gc)
