"""`alongside`: a statement's answer awaited with CPU work done while the server executes it; a
failure or a cancel meanwhile settles the statement before it goes on (the connection must be
free for the rollback)."""
from __future__ import annotations

import asyncio

import pytest

from services.commission.handlers.projection import alongside


class FakeStatement:
    """Stands in for an asyncpg query: `sent` when its task first runs, answered by `answer()`."""

    def __init__(self) -> None:
        self.sent = False
        self.cancelled = False
        self.done = asyncio.get_running_loop().create_future()

    async def run(self) -> str:
        self.sent = True
        try:
            return await self.done
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_the_work_runs_after_the_statement_went_out_and_before_its_answer():
    st = FakeStatement()
    seen = []
    got = asyncio.ensure_future(alongside(st.run(), lambda: seen.append((st.sent, st.done.done()))))
    await asyncio.sleep(0.01)
    assert seen == [(True, False)] and not got.done()  # the work ran while the answer was pending
    st.done.set_result("answer")
    assert await got == "answer"


async def test_without_work_it_is_the_statement():
    st = FakeStatement()
    st.done.set_result(7)
    assert await alongside(st.run(), None) == 7


async def test_failing_work_cancels_and_settles_the_statement_first():
    st = FakeStatement()

    def boom() -> None:
        raise ValueError("bug in the work")

    with pytest.raises(ValueError, match="bug in the work"):
        await alongside(st.run(), boom)
    assert st.cancelled  # settled before the error went on


async def test_a_statement_error_goes_on_after_the_work():
    async def failing() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("unique violation")

    ran = []
    with pytest.raises(RuntimeError, match="unique violation"):
        await alongside(failing(), lambda: ran.append(1))
    assert ran == [1]


async def test_a_cancel_meanwhile_settles_the_statement():
    st = FakeStatement()

    async def outer() -> None:
        await alongside(st.run(), lambda: None)

    task = asyncio.ensure_future(outer())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert st.cancelled
