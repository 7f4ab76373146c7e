"""The service processes' memory setting: glibc's allocator (shared.service.Malloc, tuned by
`run`, trimmed after large batches)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from shared.service import Malloc


@dataclass
class _Batch:
    events: list


def test_trims_only_after_batches_of_the_configured_size(monkeypatch):
    monkeypatch.setenv("FENXIAO_MALLOC_TRIM_EVENTS", "3")
    m = Malloc()
    if not m.glibc:
        pytest.skip("not glibc")
    m.after_batch(_Batch([1, 2]))
    assert m.trims == 0
    m.after_batch(_Batch([1, 2, 3]))
    m.after_batch(_Batch([1, 2, 3, 4]))
    assert m.trims == 2
    monkeypatch.setenv("FENXIAO_MALLOC_TRIM_EVENTS", "0")  # 0: never
    never = Malloc()
    never.after_batch(_Batch(list(range(10_000))))
    assert never.trims == 0


def test_defaults_and_the_mmap_threshold(monkeypatch):
    monkeypatch.delenv("FENXIAO_MALLOC_TRIM_EVENTS", raising=False)
    monkeypatch.delenv("FENXIAO_MALLOC_MMAP_THRESHOLD", raising=False)
    m = Malloc()
    assert (m.trim_events, m.mmap_threshold) == (500, 256 * 1024)
    calls = []
    m._mallopt = lambda param, value: calls.append((param, value)) or 1
    m.tune()
    assert calls == [(Malloc.M_MMAP_THRESHOLD, 256 * 1024)]
    monkeypatch.setenv("FENXIAO_MALLOC_MMAP_THRESHOLD", "0")  # 0: glibc's own sliding threshold
    off = Malloc()
    off._mallopt = lambda param, value: calls.append((param, value)) or 1
    off.tune()
    assert len(calls) == 1


def test_without_glibc_nothing_is_called(monkeypatch):
    monkeypatch.setenv("FENXIAO_MALLOC_TRIM_EVENTS", "1")
    m = Malloc()
    m._mallopt = m._trim = None
    m.tune()
    m.after_batch(_Batch([1]))
    assert m.trims == 0 and not m.glibc
