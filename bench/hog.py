"""`python -m bench.hog DUTY SECONDS`: a bounded CPU hog the bench runs beside a latency phase
(the "machine busy with other work" case): one process, busy `DUTY` of each 20 ms slice (0.5 =
half of one core), for at most `SECONDS`."""
from __future__ import annotations

import sys
import time


def main() -> None:
    duty, seconds = float(sys.argv[1]), float(sys.argv[2])
    end = time.monotonic() + seconds
    slice_s = 0.02
    x = 0
    while (now := time.monotonic()) < end:
        busy_until = now + slice_s * duty
        while time.monotonic() < busy_until:
            x = (x * 31 + 7) % 1_000_003
        time.sleep(slice_s * (1 - duty))


if __name__ == "__main__":
    main()
