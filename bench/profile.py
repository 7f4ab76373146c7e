"""Where the commission process spends its time: a cProfile dump of the service process
(`python -m bench.run --profile` runs it under `python -m cProfile`), grouped by area.

Own time (tottime) is grouped by where the function lives: a site-packages distribution, a
project package (services/commission/..., shared/...), or a built-in. The event loop's
`epoll.poll` is the process waiting (for PostgreSQL, Kafka, HTTP): the rest is CPU spent in
Python on the one core the process can use.

`python -m bench.profile FILE.prof` prints the same report for an existing dump."""
from __future__ import annotations

import io
import pstats
import re
import sys
from pathlib import Path

_SITE = re.compile(r"site-packages/([^/]+)/")
_PROJECT = re.compile(r"/(services/[^/]+/[^/]+|shared/[^/]+|bench|simulation)")


def area(filename: str, name: str) -> str:
    if filename == "~":
        if "poll" in name or "select" in name:
            return "(waiting: event loop poll)"
        return "(builtins)"
    m = _SITE.search(filename)
    if m:
        return m.group(1).removesuffix(".py")
    m = _PROJECT.search(filename)
    if m:
        return m.group(1).removesuffix(".py")
    if "/lib/python3" in filename:
        return "stdlib/" + Path(filename).stem
    return filename


def summarize(path: Path, out_txt: Path | None = None, top: int = 35) -> dict:
    st = pstats.Stats(str(path))
    total = st.total_tt
    areas: dict[str, float] = {}
    funcs = []
    for (fn, line, name), (cc, nc, tt, ct, callers) in st.stats.items():  # type: ignore[attr-defined]
        a = area(fn, name)
        areas[a] = areas.get(a, 0.0) + tt
        funcs.append((tt, ct, nc, f"{a}:{name}" + (f" ({Path(fn).name}:{line})" if fn != "~" else "")))
    wait = areas.get("(waiting: event loop poll)", 0.0)
    busy = total - wait
    by_area = sorted(areas.items(), key=lambda kv: -kv[1])
    report = {
        "total_s": round(total, 2), "waiting_s": round(wait, 2), "cpu_s": round(busy, 2),
        "areas_pct_of_cpu": {a: round(100 * t / busy, 1) for a, t in by_area if a != "(waiting: event loop poll)" and t / busy >= 0.01},
        "top_tottime": [{"fn": f, "tottime_s": round(tt, 3), "calls": nc} for tt, ct, nc, f in sorted(funcs, reverse=True)[:top]],
    }
    if out_txt is not None:
        buf = io.StringIO()
        buf.write(f"total {total:.1f}s, waiting in the event loop {wait:.1f}s, CPU {busy:.1f}s\n\nown time by area (% of CPU):\n")
        for a, t in by_area:
            if a != "(waiting: event loop poll)" and t / busy >= 0.005:
                buf.write(f"  {100 * t / busy:5.1f}%  {t:7.2f}s  {a}\n")
        buf.write("\n")
        s2 = pstats.Stats(str(path), stream=buf)
        s2.sort_stats("tottime").print_stats(top)
        s2.sort_stats("cumulative").print_stats(r"(services/commission|shared/)", top)
        out_txt.write_text(buf.getvalue())
    return report


if __name__ == "__main__":
    r = summarize(Path(sys.argv[1]), Path(sys.argv[1]).with_suffix(".txt"))
    print(f"total {r['total_s']}s, waiting {r['waiting_s']}s, CPU {r['cpu_s']}s")
    for a, p in r["areas_pct_of_cpu"].items():
        print(f"  {p:5.1f}%  {a}")
    print(f"details: {Path(sys.argv[1]).with_suffix('.txt')}")
