"""AsyncStateManager: exclusion per task, re-entrancy, a loop that never blocks, cancellation.

Real event loops (``asyncio.run``), real threads and processes, a real ticker that
measures the loop's lag, real cancellation; every wait bounded.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sys
import threading

import pytest

from pytest_sessionstate import (
    AsyncStateManager,
    SessionCorruptError,
    SessionLockError,
    SessionNotFoundError,
    SessionValueError,
    Settings,
    StateManager,
)
from pytest_sessionstate.clock import real_monotonic

WAIT = 20.0


@pytest.fixture
def cfg(tmp_path):
    return Settings(tmp_path / "root", lock_timeout=WAIT, durable=False)


def lock_holder(manager):
    """(inside, leave, holder): ``holder()`` takes the lock in its own task, sets
    ``inside``, and holds it until ``leave`` is set."""
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def holder():
        async with manager.lock():
            inside.set()
            await leave.wait()

    return inside, leave, holder


def run(coroutine, timeout=WAIT * 2):
    """Run a coroutine in a fresh event loop, bounded."""

    async def bounded():
        return await asyncio.wait_for(coroutine, timeout)

    return asyncio.run(bounded())


# -- the same manager, the same files, the same errors ----------------------------------------


def test_reads_and_writes_the_same_files_as_the_sync_manager(cfg):
    async def main():
        manager = AsyncStateManager("s1", settings=cfg)
        assert (manager.session_id, manager.session_dir, manager.lock_file) == (
            "s1",
            cfg.root / "s1",
            cfg.root / "s1" / ".lock",
        )
        assert manager.settings is cfg
        await manager.write_json("a.json", {"v": 1})
        assert await manager.update_json("a.json", {"w.x": 2}) == {"v": 1, "w": {"x": 2}}
        async with manager.transaction("a.json") as document:
            document["z"] = 3
        assert await manager.exists()
        assert await manager.exists("a.json")
        assert await manager.list_files() == ["a.json"]
        sync = StateManager("s1", settings=cfg)
        assert sync.read_json("a.json") == {"v": 1, "w": {"x": 2}, "z": 3}
        sync.write_json("b.json", {"from": "sync"})
        assert await manager.read_json("b.json") == {"from": "sync"}
        await manager.delete("b.json")
        await manager.delete()
        assert not await manager.exists()

    run(main())


def test_the_same_errors(cfg):
    async def main():
        with pytest.raises(SessionValueError):
            AsyncStateManager("../etc", settings=cfg)
        manager = AsyncStateManager("s1", settings=cfg)
        with pytest.raises(SessionNotFoundError):
            await manager.read_json("missing.json")
        with pytest.raises(SessionNotFoundError):
            await manager.update_json("missing.json", {"a": 1})
        with pytest.raises(SessionValueError, match="not JSON"):
            await manager.write_json("a.json", {"when": {1, 2}})
        assert not await manager.exists()  # a failed first write leaves nothing
        manager.sync.write_json("a.json", {"v": 1})
        (cfg.root / "s1" / "bad.json").write_bytes(b"{NaN")
        with pytest.raises(SessionCorruptError):
            await manager.read_json("bad.json")
        with pytest.raises(SessionNotFoundError):
            async with manager.transaction("missing.json"):
                pass
        with pytest.raises(RuntimeError, match="no"):  # noqa: PT012 - the block is the point
            async with manager.transaction("a.json") as document:
                document["v"] = 2
                raise RuntimeError("no")
        assert await manager.read_json("a.json") == {"v": 1}  # nothing written

    run(main())


# -- exclusion ----------------------------------------------------------------------------------


def test_two_tasks_of_one_loop_do_not_lose_an_update(cfg):
    """The issue's scenario: a read-modify-write with an ``await`` inside, in two tasks."""

    async def main():
        manager = AsyncStateManager("shop", settings=cfg)
        await manager.write_json("cart.json", {"items": []})

        async def add(item):
            async with manager.lock():
                cart = await manager.read_json("cart.json")
                await asyncio.sleep(0.05)  # the other task runs meanwhile
                cart["items"].append(item)
                await manager.write_json("cart.json", cart)

        await asyncio.gather(add("cups"), add("plates"))
        return sorted((await manager.read_json("cart.json"))["items"])

    assert run(main()) == ["cups", "plates"]


def test_eight_tasks_of_one_loop_increment_without_loss(cfg):
    async def main():
        manager = AsyncStateManager("s1", settings=cfg)

        async def increments():
            for _ in range(25):
                async with manager.transaction("n.json", default={"n": 0}) as document:
                    value = document["n"]
                    await asyncio.sleep(0)
                    document["n"] = value + 1

        await asyncio.gather(*(increments() for _ in range(8)))
        return (await manager.read_json("n.json"))["n"]

    assert run(main()) == 200


def _loop_in_thread(cfg, count, errors):
    async def main():
        manager = AsyncStateManager("s1", settings=cfg)
        for _ in range(count):
            async with manager.transaction("n.json", default={"n": 0}) as document:
                document["n"] += 1

    try:
        run(main())
    except BaseException as exc:  # pragma: no cover - reported by the test
        errors.append(exc)


def test_loops_in_threads_and_the_sync_manager_exclude_each_other(cfg):
    errors = []
    threads = [threading.Thread(target=_loop_in_thread, args=(cfg, 30, errors)) for _ in range(3)]

    def sync_increments():
        manager = StateManager("s1", settings=cfg)
        for _ in range(30):
            with manager.transaction("n.json", default={"n": 0}) as document:
                document["n"] += 1

    threads.append(threading.Thread(target=sync_increments))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert StateManager("s1", settings=cfg).read_json("n.json") == {"n": 120}


def _process_increments(root, count):
    cfg = Settings(root, lock_timeout=WAIT, durable=False)

    async def main():
        manager = AsyncStateManager("s1", settings=cfg)

        async def task():
            for _ in range(count):
                async with manager.transaction("n.json", default={"n": 0}) as document:
                    document["n"] += 1

        await asyncio.gather(task(), task())

    asyncio.run(main())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_processes_with_two_tasks_each_exclude_each_other(cfg, method):
    context = multiprocessing.get_context(method)
    processes = [
        context.Process(target=_process_increments, args=(str(cfg.root), 20)) for _ in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(WAIT * 3)
        if process.is_alive():  # pragma: no cover - a hang is a failure, not a wait
            process.kill()
    assert [process.exitcode for process in processes] == [0, 0, 0]
    assert StateManager("s1", settings=cfg).read_json("n.json") == {"n": 120}


# -- re-entrancy per task -----------------------------------------------------------------------


def test_the_holding_task_may_take_the_lock_again_while_another_task_waits(cfg):
    async def main():
        manager = AsyncStateManager("s1", settings=cfg)
        await manager.write_json("a.json", {"n": 0})
        order = []

        async def holder():
            async with manager.lock():
                order.append("outer")
                await asyncio.sleep(0.1)
                async with manager.lock(timeout=0):  # nested: no wait, no deadlock
                    await manager.update_json("a.json", {"n": 1})
                    async with manager.transaction("a.json") as document:
                        document["n"] += 1
                order.append("holder done")

        async def other():
            await asyncio.sleep(0.02)
            async with manager.lock():
                order.append("other")

        await asyncio.gather(holder(), other())
        return order, await manager.read_json("a.json")

    order, document = run(main())
    assert order == ["outer", "holder done", "other"]
    assert document == {"n": 2}


def test_another_task_gets_a_zero_timeout_lock_error_while_one_holds(cfg):
    async def main():
        manager = AsyncStateManager("s1", settings=cfg)
        inside, leave, holder = lock_holder(manager)
        task = asyncio.create_task(holder())
        await inside.wait()
        with pytest.raises(SessionLockError) as info:
            async with manager.lock(timeout=0):
                pass
        leave.set()
        await task
        async with manager.lock(timeout=0):
            pass
        return info.value.details

    details = run(main())
    assert details["session_id"] == "s1"
    assert details["timeout"] == 0


# -- the loop never blocks -------------------------------------------------------------------


def test_the_loop_keeps_ticking_while_a_task_waits_for_another_process(cfg, contention):
    manager = AsyncStateManager("s1", settings=cfg)
    manager.sync.write_json("a.json", {"n": 0})

    async def main():
        lags = []

        async def ticker(stop):
            while not stop.is_set():
                before = real_monotonic()
                await asyncio.sleep(0.01)
                lags.append(real_monotonic() - before - 0.01)

        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        started = real_monotonic()
        await manager.update_json("a.json", {"n": 1})  # waits for the other process
        waited = real_monotonic() - started
        stop.set()
        await ticking
        return waited, lags

    holder_released = threading.Event()
    with contention.hold_lock(manager.sync, timeout=WAIT) as held:
        timer = threading.Timer(1.0, holder_released.set)
        timer.start()
        result = {}

        def runner():
            result["value"] = run(main())

        thread = threading.Thread(target=runner)
        thread.start()
        assert holder_released.wait(WAIT)
        assert held is not None
    thread.join(WAIT)
    assert not thread.is_alive()
    waited, lags = result["value"]
    assert waited >= 0.5  # it really waited for the other process
    assert len(lags) >= 20  # the loop ran its ticker all along (1 s / 10 ms ticks)
    # A blocked loop would show one lag of about a second; the bound is wide for a
    # loaded machine (the benchmark measures the real figure).
    assert max(lags) < 0.5


# -- cancellation and timeouts -------------------------------------------------------------------


def _peer_can_lock(cfg, seconds=5.0):
    """Whether another process takes the lock within ``seconds`` (then lets go)."""
    code = (
        "import sys\n"
        "from pytest_sessionstate import Settings, StateManager\n"
        "m = StateManager('s1', settings=Settings(sys.argv[1]))\n"
        "with m.lock(timeout=float(sys.argv[2])):\n"
        "    print('ok')\n"
    )
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", code, str(cfg.root), str(seconds)],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        check=False,
    )
    return done.stdout.strip() == "ok"


@pytest.mark.parametrize("how", ["cancel", "wait_for", "timeout"])
def test_cancelling_a_waiting_task_leaves_nothing_held(cfg, how):
    if how == "timeout" and sys.version_info < (3, 11):
        pytest.skip("asyncio.timeout() is Python 3.11+")

    async def main():
        manager = AsyncStateManager("s1", settings=cfg)
        await manager.write_json("a.json", {"n": 0})
        inside, leave, holder = lock_holder(manager)
        holding = asyncio.create_task(holder())
        await inside.wait()
        if how == "cancel":
            waiting = asyncio.create_task(manager.update_json("a.json", {"n": 1}))
            await asyncio.sleep(0.1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        elif how == "wait_for":
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(manager.update_json("a.json", {"n": 1}), 0.1)
        else:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):  # type: ignore[attr-defined]
                    await manager.update_json("a.json", {"n": 1})
        leave.set()
        await holding
        return await manager.read_json("a.json")

    assert run(main()) == {"n": 0}  # the cancelled update never happened
    assert _peer_can_lock(cfg)  # and nothing is held by this process


def test_cancelling_during_a_write_leaves_old_or_new_and_the_lock_free(cfg):
    big = {"rows": [{"i": i, "text": "x" * 50} for i in range(20000)]}

    async def main():
        manager = AsyncStateManager("s1", settings=cfg)
        await manager.write_json("a.json", {"old": True})
        outcomes = []
        for delay in (0.0, 0.001, 0.005, 0.02):
            writing = asyncio.create_task(manager.write_json("a.json", big))
            await asyncio.sleep(delay)
            writing.cancel()
            try:
                await writing
                outcomes.append("finished")
            except asyncio.CancelledError:
                outcomes.append("cancelled")
            document = await manager.read_json("a.json")
            assert document in ({"old": True}, big)
            await manager.write_json("a.json", {"old": True})
        async with manager.lock(timeout=0):
            pass
        return outcomes

    outcomes = run(main())
    assert "cancelled" in outcomes
    assert _peer_can_lock(cfg)


@pytest.mark.parametrize("timeout", [0, 0.3])
def test_timeouts_mean_what_they_mean_for_the_sync_lock(cfg, contention, timeout):
    manager = AsyncStateManager("s1", settings=cfg)

    async def main():
        started = real_monotonic()
        with pytest.raises(SessionLockError) as info:
            async with manager.lock(timeout=timeout):
                pass
        return real_monotonic() - started, info.value.details["timeout"]

    with contention.hold_lock(manager.sync, timeout=WAIT):
        elapsed, reported = run(main())
    assert reported == timeout
    assert elapsed >= timeout
    assert elapsed < timeout + 5.0  # a real deadline, not the default 20 s


def test_a_negative_timeout_waits_for_the_holder(cfg, contention):
    manager = AsyncStateManager("s1", settings=cfg)

    async def main():
        async with manager.lock(timeout=-1):
            return "got it"

    release = threading.Timer(0.3, lambda: None)
    with contention.hold_lock(manager.sync, timeout=WAIT) as _:
        result = {}
        thread = threading.Thread(target=lambda: result.update(value=run(main())))
        thread.start()
        release.start()
        release.join(WAIT)
        assert thread.is_alive()  # still waiting while the other process holds it
    thread.join(WAIT)
    assert result == {"value": "got it"}


def test_timeouts_are_real_time_under_freeze_time(cfg, contention):
    freezegun = pytest.importorskip("freezegun")
    manager = AsyncStateManager("s1", settings=cfg)

    async def main():
        with pytest.raises(SessionLockError):
            async with manager.lock(timeout=0.3):
                pass
        return "timed out"

    with contention.hold_lock(manager.sync, timeout=WAIT), freezegun.freeze_time("2024-05-01"):
        started = real_monotonic()
        assert run(main(), timeout=None) == "timed out"
        assert real_monotonic() - started < 10


def test_timeouts_are_real_time_under_time_machine(cfg, contention):
    time_machine = pytest.importorskip("time_machine")
    manager = AsyncStateManager("s1", settings=cfg)

    async def main():
        with pytest.raises(SessionLockError):
            async with manager.lock(timeout=0.3):
                pass
        return "timed out"

    with contention.hold_lock(manager.sync, timeout=WAIT), time_machine.travel(0, tick=False):
        assert run(main()) == "timed out"


# -- the sync API used from coroutines ------------------------------------------------------


def test_a_second_task_entering_the_sync_lock_gets_a_clear_error(cfg):
    async def main():
        sync = StateManager("s1", settings=cfg)
        inside = asyncio.Event()
        leave = asyncio.Event()

        async def holder():
            with sync.lock():
                inside.set()
                await leave.wait()
                with sync.lock(timeout=0):  # the owning task itself: re-entrant
                    pass

        task = asyncio.create_task(holder())
        await inside.wait()
        with (
            pytest.raises(SessionLockError, match="AsyncStateManager"),
            StateManager("s1", settings=cfg).lock(),
        ):
            pass
        leave.set()
        await task

    run(main())


def test_the_sync_lock_refuses_a_task_while_an_async_holder_of_its_loop_holds(cfg):
    async def main():
        manager = AsyncStateManager("s1", settings=cfg)
        inside, leave, holder = lock_holder(manager)
        task = asyncio.create_task(holder())
        await inside.wait()
        started = real_monotonic()
        # Waiting would freeze the loop, and the holder with it.
        with pytest.raises(SessionLockError, match="AsyncStateManager"), manager.sync.lock():
            pass
        assert real_monotonic() - started < 5  # refused at once, not at the timeout
        leave.set()
        await task

    run(main())


def test_documents_written_async_are_plain_json_files(cfg):
    async def main():
        manager = AsyncStateManager("s1", settings=cfg)
        await manager.write_json("a.json", {"v": [1, 2]})

    run(main())
    assert json.loads((cfg.root / "s1" / "a.json").read_text()) == {"v": [1, 2]}


def test_delete_inside_a_held_async_lock_is_seen_by_the_holding_task(cfg):
    async def main():
        manager = AsyncStateManager("s1", settings=cfg)
        await manager.write_json("a.json", {"v": 1})
        async with manager.lock():
            await manager.delete()
            inside = (await manager.exists(), await manager.list_files())
            await manager.write_json("b.json", {"v": 2})  # makes the session anew
            after_write = await manager.exists()
        return inside, after_write, await manager.list_files()

    inside, after_write, files = run(main())
    assert inside == (False, [])
    assert after_write
    assert files == ["b.json"]
