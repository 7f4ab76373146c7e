"""Run a module under cProfile, one profile per bench phase:
`python -m bench.profiled PREFIX services.commission.main`.

The service's own code is untouched. SIGUSR1 writes what was profiled since the last signal to
`PREFIX-<n>.prof` and starts a new profile; the bench sends it at every phase boundary, so
`n` maps to the phase that just ended. The last segment is written when the service exits.

`FENXIAO_PROFILE_TIMER=cpu` times with the process's CPU clock instead of the wall clock: on a
busy machine a call that wakes another process (a socket send) is often preempted, and the wall
clock charges that wait to it. The CPU clock is a system call per reading (slower to profile)."""
from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
import time


def main() -> None:
    prefix, module = sys.argv[1], sys.argv[2]
    timer = (time.process_time,) if os.environ.get("FENXIAO_PROFILE_TIMER") == "cpu" else ()
    state = {"n": 0, "prof": cProfile.Profile(*timer)}

    def dump(*_: object) -> None:
        prof = state["prof"]
        prof.disable()
        prof.dump_stats(f"{prefix}-{state['n']}.prof")
        state["n"] += 1
        state["prof"] = cProfile.Profile(*timer)
        state["prof"].enable()

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = [module, *sys.argv[3:]]
    state["prof"].enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        state["prof"].disable()
        state["prof"].dump_stats(f"{prefix}-{state['n']}.prof")


if __name__ == "__main__":
    main()
