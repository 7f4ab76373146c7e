"""Fixtures for the console's browser tests: the stack (services as processes + the console),
seeded once per session, and headless Debian Chromium driven by Playwright (the browser is the
system's `/usr/bin/chromium`, never downloaded by the test tool)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import pytest_asyncio

from tests.e2e.console import stack as st

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[3]


def pytest_collection_modifyitems(config, items):
    if os.path.exists(CHROMIUM):
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium); "
                                   ".ci/run installs it so CI runs these tests")
    for item in items:
        if "tests/e2e/console" in str(item.fspath):
            item.add_marker(skip)


@pytest_asyncio.fixture(scope="session")
async def console_stack(infra):
    log_dir = ROOT / ".local" / "test-logs" / "console-e2e"
    stack = await st.start(log_dir)
    try:
        await st.seed(stack)
        yield stack
    finally:
        stack.stop()


@pytest_asyncio.fixture(scope="session")
async def browser():
    from playwright.async_api import async_playwright

    profile = tempfile.mkdtemp(prefix="fenxiao-chromium-")
    async with async_playwright() as p:
        # a new, empty profile directory for this run
        context = await p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1366, "height": 860}, locale="zh-CN")
        try:
            yield context
        finally:
            await context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def screenshots() -> Path | None:
    """`FENXIAO_CONSOLE_SCREENSHOTS=docs/console` writes the main pages' screenshots there."""
    target = os.environ.get("FENXIAO_CONSOLE_SCREENSHOTS")
    if not target:
        return None
    path = (ROOT / target) if not os.path.isabs(target) else Path(target)
    path.mkdir(parents=True, exist_ok=True)
    return path
