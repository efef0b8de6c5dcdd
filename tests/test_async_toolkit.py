"""The toolkit for async code: coroutine targets in every contention mode, mode="task",
and the crash injector with coroutine targets."""

from __future__ import annotations

import asyncio
import errno

import pytest

from pytest_sessionstate import AsyncStateManager, StateManager


async def next_ticket(session_id):
    manager = AsyncStateManager(session_id)
    async with manager.transaction("session.json") as document:
        value = document["tickets"]
        await asyncio.sleep(0)  # a task switch inside the critical section
        document["tickets"] = value + 1
        return document["tickets"]


@pytest.mark.parametrize("mode", ["process", "thread", "task"])
def test_coroutine_targets_lose_no_ticket_in_every_mode(make_session, contention, mode):
    session = make_session(files={"session.json": {"tickets": 0}})
    result = contention.run(
        next_ticket, args=(session.session_id,), workers=4, iterations=10, mode=mode
    )
    result.raise_errors()
    assert sorted(result.returns) == list(range(1, 41))
    if mode != "thread":  # a thread worker's coroutine waits in executor threads
        assert len(result.lock_waits) >= 40


async def fails(counter):
    await asyncio.sleep(0)
    raise ValueError(f"bad {counter}")


def test_task_mode_reports_errors_per_worker_and_iteration(contention):
    result = contention.run(fails, args=(7,), workers=3, iterations=2, mode="task")
    assert not result.ok
    assert len(result.errors) == 6
    assert {(e.worker, e.iteration) for e in result.errors} == {
        (w, i) for w in range(3) for i in range(2)
    }
    assert all("bad 7" in e.message for e in result.errors)


async def hangs():
    await asyncio.sleep(60)


def test_task_mode_cancels_and_reports_tasks_still_running_at_the_timeout(contention):
    result = contention.run(hangs, workers=2, mode="task", timeout=0.5)
    assert sorted(result.timed_out) == [0, 1]
    assert len(result.errors) == 2
    assert result.elapsed < 30


def test_task_mode_workers_start_together(contention):
    started = []

    async def record():
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0)

    result = contention.run(record, workers=5, mode="task")
    result.raise_errors()
    assert len(started) == 5


async def update(session_id):
    await AsyncStateManager(session_id).update_json("session.json", {"step": "done"})


def test_crash_explore_takes_a_coroutine_target(make_session, crash):
    session = make_session(files={"session.json": {"step": "todo"}})
    for mode in ("kill", "error", "power-loss"):
        report = crash.explore(update, args=(session.session_id,), mode=mode)
        report.assert_ok()
        assert report.runs >= 2


def test_crash_fail_at_fails_an_async_write(make_session, crash):
    session = make_session(files={"session.json": {"step": "todo"}})

    async def main():
        with crash.fail_at("temp-written", errno=errno.ENOSPC), pytest.raises(OSError) as info:
            await update(session.session_id)
        return info.value.errno

    assert asyncio.run(main()) == errno.ENOSPC
    assert StateManager(session.session_id).read_json("session.json") == {"step": "todo"}
