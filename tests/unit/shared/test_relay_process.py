"""The pipes between a service and its relay process (shared.relay_process), without a broker: a
kick never blocks or fails (a full pipe, a gone child), the child's report lines survive a full
pipe, and what they carry reaches the service's counters and readiness. The processes themselves
run on the real broker in tests/integration/foundation/test_relay_process.py."""
from __future__ import annotations

import asyncio
import json
import os

import pytest

from shared.outbox import OUTBOX_PARKED
from shared.relay_process import RelayProcess, _Reporter
from shared.settings import CommonSettings
from shared.telemetry import OUTBOX_PUBLISHED


def relay(service: str = "unit-relay") -> RelayProcess:
    return RelayProcess(service, "unit", database_url="postgresql://x", kafka_bootstrap="127.0.0.1:1")


def test_a_kick_never_blocks_on_a_full_pipe_nor_fails_once_the_child_is_gone():
    r, w = os.pipe()
    os.set_blocking(w, False)
    rp = relay()
    rp._wake_w = w
    try:
        for _ in range(100_000):  # far more than a pipe holds
            rp.kick()
        assert len(os.read(r, 1 << 20)) > 0
        os.close(r)
        r = -1
        rp.kick()  # EPIPE: nobody reads any more
    finally:
        os.close(w)
        if r >= 0:
            os.close(r)
    rp._wake_w = None
    rp.kick()  # between two children: nothing to wake


def test_report_lines_wait_for_room_in_a_full_pipe_and_arrive_whole():
    r, w = os.pipe()
    try:
        rep = _Reporter(w)
        for i in range(20_000):  # ~600 KiB of lines: the pipe fills, the rest waits
            rep.counts(i, {"t": 1} if i % 2 else {})
        assert rep.pending
        got = b""
        os.set_blocking(r, False)
        while True:
            try:
                chunk = os.read(r, 1 << 16)
            except BlockingIOError:
                if not rep.pending:
                    break
                rep.send({"published": 0})  # the next line takes what waited along
                continue
            got += chunk
        lines = [json.loads(x) for x in got.splitlines()]
        assert [m["published"] for m in lines[:20_000]] == list(range(20_000))
        assert sum(m.get("parked", {}).get("t", 0) for m in lines) == 10_000
    finally:
        os.close(r)
        os.close(w)


async def test_reports_feed_the_service_counters_and_the_first_ready_ends_the_start_drain():
    rp = relay("unit-relay-counts")
    rp._first = asyncio.get_running_loop().create_future()
    before = OUTBOX_PUBLISHED.labels("unit-relay-counts")._value.get()
    rp._on_report(b'{"published":7,"parked":{"a.v1":2}}\n')
    rp._on_report(b"not json\n")
    assert OUTBOX_PUBLISHED.labels("unit-relay-counts")._value.get() == before + 7
    assert OUTBOX_PARKED.labels("unit-relay-counts", "a.v1")._value.get() == 2
    assert not rp._first.done() and not rp.ready
    rp._on_report(b'{"ready":true,"drained":42}\n')
    assert await rp.drain() == 42
    assert not rp.ready  # no child process behind it here


def test_the_setting_takes_inline_or_process_only(monkeypatch):
    monkeypatch.delenv("FENXIAO_OUTBOX_RELAY", raising=False)
    assert CommonSettings().outbox_relay == "inline"
    monkeypatch.setenv("FENXIAO_OUTBOX_RELAY", "process")
    assert CommonSettings().outbox_relay == "process"
    monkeypatch.setenv("FENXIAO_OUTBOX_RELAY", "thread")
    with pytest.raises(ValueError):
        CommonSettings()


def test_commission_runs_its_relay_inline_unless_told_otherwise(monkeypatch):
    from services.commission.settings import CommissionSettings

    monkeypatch.delenv("FENXIAO_OUTBOX_RELAY", raising=False)
    assert CommissionSettings().outbox_relay == "inline"
    monkeypatch.setenv("FENXIAO_OUTBOX_RELAY", "process")
    assert CommissionSettings().outbox_relay == "process"
