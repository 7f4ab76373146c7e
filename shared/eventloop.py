"""The event loop the services run on: uvloop where it is installed (uvicorn takes it too),
else asyncio's own. On these machines asyncio's loop costs about twice the client CPU per
PostgreSQL round trip (docs/benchmarks.md, "Eighth session")."""
from __future__ import annotations

import asyncio
from typing import Callable


def uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """`uvloop.new_event_loop` for `asyncio.Runner(loop_factory=...)`, or None (asyncio's loop)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
