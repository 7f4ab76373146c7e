"""The bench's memory figures are the kernel's high-water mark per phase: a peak between two
samples still counts, and each phase starts from a fresh mark."""
from __future__ import annotations

import subprocess
import sys

from bench.memory import RssSampler

CHILD = r"""
import sys
print("ready", flush=True)
sys.stdin.readline()
blob = bytearray(96 << 20)  # 96 MiB, every page touched
for i in range(0, len(blob), 4096):
    blob[i] = 1
del blob                    # gone again before anyone samples
print("done", flush=True)
sys.stdin.readline()
"""


class _Proc:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_a_peak_between_samples_counts_in_its_phase_and_the_next_phase_starts_afresh():
    child = _Proc()
    try:
        assert child.proc.stdout.readline().strip() == "ready"
        s = RssSampler()
        s.watch("svc", child)
        s.sample()
        s.set_phase("burst")
        child.proc.stdin.write("go\n")
        child.proc.stdin.flush()
        assert child.proc.stdout.readline().strip() == "done"
        s.set_phase("after")
        s.sample()
        mib = s.as_dict()
        burst, after = mib["by_phase_mib"]["burst"]["svc"], mib["by_phase_mib"]["after"]["svc"]
        sampled_burst = mib["sampled_by_phase_mib"]["burst"]["svc"]
        assert burst >= sampled_burst + 80, mib  # the samples missed the 96 MiB, the mark did not
        assert after <= burst - 80, mib  # the mark was reset at the phase boundary
        assert mib["peak_rss_mib"]["svc"] >= burst
    finally:
        child.proc.kill()
        child.proc.wait()


PARENT = r"""
import subprocess, sys
blob = bytearray(48 << 20)  # the relay's 48 MiB, every page touched, held until stdin closes
child = subprocess.Popen([sys.executable, "-c", "import sys\nb = bytearray(48 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
                          "print('ready', flush=True)\nsys.stdin.readline()", "shared.relay_process"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "ready"
print("ready", flush=True)
sys.stdin.readline()
child.stdin.close()
child.wait()
"""


def test_a_relay_process_a_service_started_has_its_own_figure():
    parent = _Proc.__new__(_Proc)
    parent.proc = subprocess.Popen([sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.proc.stdout.readline().strip() == "ready"
        s = RssSampler()
        s.watch("svc", parent)
        s.sample()
        mib = s.as_dict()["peak_rss_mib"]
        assert set(mib) == {"svc", "svc.relay"}, mib
        assert mib["svc.relay"] >= 48, mib  # the child's own memory, not the parent's
    finally:
        parent.proc.stdin.close()
        parent.proc.wait(10)
