"""The bench's CPU meter (bench/cpu.py): per phase and process group, from /proc."""
import os
import socket
import subprocess
import sys
import time

from bench.cpu import CpuMeter, children_of, cpu_seconds, listener_of, parent_of


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_cpu_seconds_of_this_process_grow_with_its_work_and_a_gone_pid_has_none():
    before = cpu_seconds(os.getpid())
    _burn(0.2)
    assert cpu_seconds(os.getpid()) - before >= 0.15
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    assert cpu_seconds(p.pid) is None


def test_parent_children_and_the_listener_of_a_port_are_found():
    assert parent_of(os.getpid()) == os.getppid()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children_of(os.getpid())
    finally:
        child.kill()
        child.wait()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert listener_of(s.getsockname()[1]) == os.getpid()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening
        assert listener_of(s.getsockname()[1]) is None


def test_a_phase_gets_the_cpu_spent_in_it_and_a_later_process_counts_whole():
    pids: dict[str, list[int]] = {"me": [os.getpid()]}
    meter = CpuMeter(lambda: pids)
    _burn(0.3)
    meter.set_phase("second")
    first = meter.by_phase["startup"]["me"]
    assert 0.25 <= first < 5
    # a process started during the phase: all of its CPU is this phase's
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
                              "time.sleep(30)"])
    try:
        pids["child"] = [child.pid]
        deadline = time.monotonic() + 20
        while (cpu_seconds(child.pid) or 0) < 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
        meter.set_phase("third")
    finally:
        child.kill()
        child.wait()
    assert meter.by_phase["second"]["child"] >= 0.35
    assert meter.by_phase["second"].get("me", 0) < first  # no work of ours in it beyond the polling
    assert meter.per_order_us("second", 1000)["child"] == round(meter.by_phase["second"]["child"] / 1000 * 1e6, 1)
    assert meter.per_order_us("second", 0) == {}


def test_the_machine_busy_share_of_a_phase_counts_this_process_work_and_idle_time_as_idle():
    from bench.cpu import machine_ticks

    busy, total = machine_ticks()
    assert 0 <= busy <= total
    meter = CpuMeter(lambda: {})
    _burn(0.5)  # one core busy: at least 1/ncpu of the machine, less what was idle meanwhile
    meter.set_phase("idle")
    burning = meter.machine_busy_by_phase["startup"]
    assert 0.5 / (os.cpu_count() or 1) * 0.8 <= burning <= 1.0
    time.sleep(0.6)
    meter.set_phase("-")
    assert 0.0 <= meter.machine_busy_by_phase["idle"] <= 1.0
    assert meter.as_dict()["machine_busy_by_phase"] == meter.machine_busy_by_phase
