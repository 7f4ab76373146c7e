import asyncio
import os
import subprocess
import sys

from shared.eventloop import uvloop_factory


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
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    assert out.stdout.strip() == "None"
