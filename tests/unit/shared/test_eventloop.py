import asyncio
import subprocess
import sys
from pathlib import Path

from shared.eventloop import uvloop_factory

ROOT = Path(__file__).resolve().parents[3]


def test_the_services_loop_is_uvloop_where_installed():
    factory = uvloop_factory()
    assert factory is not None  # uvicorn[standard] brings it
    with asyncio.Runner(loop_factory=factory) as r:
        assert type(r.get_loop()).__module__.startswith("uvloop")


def test_without_uvloop_asyncio_s_own_loop():
    # a module that cannot be imported: what a machine without uvloop sees
    code = ("import sys; sys.modules['uvloop'] = None\n"
            "from shared.eventloop import uvloop_factory; print(uvloop_factory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "None"
