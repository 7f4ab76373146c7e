"""The service processes' garbage-collector setting (shared.service.tune_gc, called by `run`)."""
from __future__ import annotations

import gc

from shared.service import tune_gc


def test_full_collections_wait_and_start_up_objects_are_frozen(monkeypatch):
    before = gc.get_threshold()
    try:
        monkeypatch.delenv("FENXIAO_GC_FULL_EVERY", raising=False)
        tune_gc()
        assert gc.get_threshold() == (before[0], before[1], 1000)
        assert gc.get_freeze_count() > 0  # the modules imported so far are out of the collector's walk
        monkeypatch.setenv("FENXIAO_GC_FULL_EVERY", "10")
        tune_gc()
        assert gc.get_threshold()[2] == 10  # Python's default, for comparison runs
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
