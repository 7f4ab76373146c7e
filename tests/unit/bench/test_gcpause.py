"""The bench keeps its own heap out of the collector's sight during a latency phase, and
records every collection it still runs (bench/gcpause.py)."""
import gc

from bench.gcpause import quiet_heap, refreeze


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_the_heap_at_entry_is_frozen_inside_and_released_after():
    before = gc.get_freeze_count()
    keep = [_Node() for _ in range(1000)]
    with quiet_heap():
        assert gc.get_freeze_count() >= before + len(keep)
    assert gc.get_freeze_count() == 0


def test_collections_inside_are_counted_with_their_generation():
    with quiet_heap() as pauses:
        for _ in range(3):
            _Node()
        gc.collect(0)
        gc.collect(2)
    got = pauses.as_dict()
    assert got["collections_by_generation"][0] >= 1
    assert got["collections_by_generation"][2] >= 1
    assert got["max_pause_ms"] >= 0
    assert pauses not in gc.callbacks


def test_a_collection_after_the_block_is_not_counted():
    with quiet_heap() as pauses:
        pass
    gc.collect(2)
    assert pauses.as_dict()["collections_by_generation"] == [0, 0, 0]


def test_refreeze_inside_also_freezes_what_was_built_since_entry():
    with quiet_heap():
        at_entry = gc.get_freeze_count()
        built = [_Node() for _ in range(500)]
        refreeze()
        assert gc.get_freeze_count() >= at_entry + len(built)
    assert gc.get_freeze_count() == 0
