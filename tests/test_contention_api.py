"""The contention simulator's edges, tested in this process with real processes,
threads, signals and locks: bad input, spawn and pickling, workers that die or
hang, cleanup on exception, interrupt and close, and interleave's schedules."""

from __future__ import annotations

import math
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_sessionstate import (
    ContentionResult,
    ContentionSimulator,
    SessionLockError,
    Settings,
    StateManager,
    list_sessions,
)
from pytest_sessionstate.testing.contention import (
    CONTENTION_MODES,
    MODES,
    PROBE_POINTS,
    ContentionError,
    WorkerDiedError,
    WorkerTimeoutError,
)
from pytest_sessionstate.testing.results import qualified_name

TIMEOUT_ERROR = qualified_name(WorkerTimeoutError)
HAS_FORK = "fork" in multiprocessing.get_all_start_methods()
needs_fork = pytest.mark.skipif(not HAS_FORK, reason="closures need the fork start method")


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def counter(make_session: Any) -> StateManager:
    session: StateManager = make_session(files={"session.json": {"n": 0}})
    return session


def worker_threads() -> list[threading.Thread]:
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith(("sessionstate-worker-", "sessionstate-interleave-"))
    ]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, -1])
def test_workers_below_one(contention: ContentionSimulator, workers: Any) -> None:
    with pytest.raises(ValueError, match=rf"workers must be an integer >= 1, not {workers}"):
        contention.run(print, workers=workers)


@pytest.mark.parametrize(("workers", "kind"), [(True, "bool"), (1.5, "float"), ("2", "str")])
def test_workers_not_an_int(contention: ContentionSimulator, workers: Any, kind: str) -> None:
    with pytest.raises(TypeError, match=rf"workers must be an integer >= 1, not {kind}"):
        contention.run(print, workers=workers)


def test_iterations_below_one_or_not_an_int(contention: ContentionSimulator) -> None:
    for value in (0, -3):
        with pytest.raises(ValueError, match=r"iterations must be an integer >= 1, not -?\d"):
            contention.run(print, iterations=value)
    with pytest.raises(TypeError, match=r"iterations must be an integer >= 1, not bool"):
        contention.run(print, iterations=False)


def test_unknown_mode_names_the_allowed_ones(contention: ContentionSimulator) -> None:
    assert MODES == CONTENTION_MODES == ("process", "thread", "task")
    with pytest.raises(
        ValueError, match=r"mode must be one of 'process', 'thread', 'task', not 'greenlet'"
    ):
        contention.run(print, mode="greenlet")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"mode must be one of .*, not int"):
        contention.run(print, mode=3)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        (None, TypeError),
        ("5", TypeError),
    ],
)
def test_bad_timeouts(contention: ContentionSimulator, timeout: Any, error: type) -> None:
    with pytest.raises(error, match="timeout must be a positive number of seconds, not "):
        contention.run(print, timeout=timeout)
    with pytest.raises(error, match="timeout must be a positive number of seconds, not "):
        contention.interleave(print, print, timeout=timeout)


def test_unknown_probe_point_names_the_allowed_ones(contention: ContentionSimulator) -> None:
    with pytest.raises(ValueError, match=r"pause_at must be one of .*, not 'reed'") as info:
        contention.interleave(print, print, pause_at="reed")
    for point in PROBE_POINTS:
        assert repr(point) in str(info.value)
    assert "'reed'" in str(info.value)


def test_unknown_start_method(session_settings: Settings) -> None:
    with pytest.raises(ValueError, match=r"start_method must be one of .*'spawn'"):
        ContentionSimulator(session_settings, start_method="teleport")


def test_not_callable_and_bad_session(contention: ContentionSimulator) -> None:
    with pytest.raises(TypeError, match="target must be callable"):
        contention.run(42)  # type: ignore[arg-type]
    with (
        pytest.raises(TypeError, match="session must be a StateManager or a session id"),
        contention.hold_lock(7),  # type: ignore[arg-type]
    ):
        pass


# -- spawn ----------------------------------------------------------------------------------


def test_spawn_refuses_a_lambda_clearly(session_settings: Settings) -> None:
    with ContentionSimulator(session_settings, start_method="spawn") as simulator:
        assert simulator.start_method == "spawn"
        with pytest.raises(TypeError, match="does not pickle") as info:
            simulator.run(lambda: 1, workers=2)
    message = str(info.value)
    assert "'fork'" in message
    assert "module-level function" in message
    assert "mode='thread'" in message


def test_spawn_runs_a_module_level_target_under_the_test_settings(
    session_settings: Settings, make_session: Any
) -> None:
    session = make_session()
    with ContentionSimulator(session_settings, start_method="spawn") as simulator:
        result = simulator.run(list_sessions, workers=2, timeout=120)
    result.raise_errors()
    # a spawned child does not inherit use_settings(): the simulator hands them over
    assert result.returns == [[session.session_id], [session.session_id]]


def test_the_fork_with_threads_warning_is_silenced_and_nothing_else() -> None:
    from pytest_sessionstate.testing.processes import start_process

    class Starts:
        """Warns on start() as CPython 3.12+'s os.fork() does in a threaded process."""

        def __init__(self, message: str) -> None:
            self.message = message

        def start(self) -> None:
            warnings.warn(self.message, DeprecationWarning, stacklevel=1)

    fork_warning = (
        f"This process (pid={os.getpid()}) is multi-threaded, use of fork() may lead to "
        "deadlocks in the child."
    )
    start_process(Starts(fork_warning))  # type: ignore[arg-type]  # no error: silenced
    with pytest.raises(DeprecationWarning, match="something else"):
        start_process(Starts("something else"))  # type: ignore[arg-type]


@needs_fork
def test_forking_from_a_threaded_process_lets_no_warning_escape(
    contention: ContentionSimulator,
) -> None:
    # On Python 3.12+ os.fork() warns here (a thread is alive); filterwarnings=error
    # would turn that into a failure if the simulator let it through.
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, args=(30,), daemon=True)
    busy.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = contention.run(os.getpid, workers=2)
    finally:
        stop.set()
        busy.join(5)
    assert result.ok


# -- what comes back from processes -------------------------------------------------------------


class TwoArgError(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")  # pickles, but cannot be rebuilt from args


class LockedError(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()  # does not pickle at all


@needs_fork
def test_unpicklable_values_and_exceptions_are_reported(contention: ContentionSimulator) -> None:
    def unsendable_return() -> Any:
        return lambda: None

    def unrebuildable() -> None:
        raise TwoArgError("a", "b")

    def unpicklable() -> None:
        raise LockedError

    result = contention.run(unsendable_return, workers=2)
    assert result.returns == []
    assert [e.iteration for e in result.errors] == [0, 0]
    assert all("could not be sent back" in e.message for e in result.errors)

    result = contention.run(unrebuildable, workers=1)
    (error,) = result.errors
    assert error.exc_type.endswith("TwoArgError")
    assert error.message == "a/b"
    assert "raise TwoArgError" in error.traceback
    assert error.exception is None

    result = contention.run(unpicklable, workers=1)
    (error,) = result.errors
    assert error.exc_type.endswith("LockedError")
    assert error.message == "holds a lock"
    assert error.exception is None
    with pytest.raises(ContentionError, match="LockedError: holds a lock"):
        result.raise_errors()


@needs_fork
def test_a_worker_that_dies_is_reported(contention: ContentionSimulator) -> None:
    calls: list[int] = []

    def die_on_third_call() -> int:
        calls.append(1)
        if len(calls) == 3:
            os._exit(3)
        return len(calls)

    result = contention.run(die_on_third_call, workers=2, iterations=5)
    assert result.returns == [1, 2, 1, 2]
    assert [(e.worker, e.iteration) for e in result.errors] == [(0, 2), (1, 2)]
    assert all(e.exc_type == qualified_name(WorkerDiedError) for e in result.errors)
    assert all("exit code 3" in e.message for e in result.errors)
    assert multiprocessing.active_children() == []


@needs_fork
def test_args_and_kwargs_reach_the_target(contention: ContentionSimulator) -> None:
    result = contention.run(
        lambda a, b=0: (a, b, os.getpid()), args=(1,), kwargs={"b": 2}, workers=2, iterations=2
    )
    assert isinstance(result, ContentionResult)
    assert result.ok
    assert [r[:2] for r in result.returns] == [(1, 2)] * 4
    assert len({r[2] for r in result.returns}) == 2
    result.raise_errors()  # ok: nothing raised


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_lock_waits_are_measured(
    contention: ContentionSimulator, make_session: Any, mode: str
) -> None:
    session = counter(make_session)
    sid = session.session_id

    def hold_a_while() -> None:
        with StateManager(sid).lock():
            time.sleep(0.3)

    result = contention.run(hold_a_while, workers=3, mode=mode)
    result.raise_errors()
    assert len(result.lock_waits) == 3
    # three holders of 0.3 s in a row: the last one waited for the other two
    assert max(result.lock_waits) >= 0.25
    assert result.elapsed >= 0.6


# -- threads that do not stop ---------------------------------------------------------------


def test_a_thread_past_the_timeout_stops_at_its_next_probe_point(
    contention: ContentionSimulator, make_session: Any
) -> None:
    session = counter(make_session)

    def read_forever() -> None:
        while True:
            session.read_json("session.json")
            time.sleep(0.01)

    started = time.monotonic()
    result = contention.run(read_forever, workers=2, mode="thread", timeout=0.5)
    assert time.monotonic() - started < 5
    assert result.timed_out == [0, 1]
    assert [e.exc_type for e in result.errors] == [TIMEOUT_ERROR] * 2
    assert all("probe point 'read'" in e.message for e in result.errors)
    assert all("in read_forever" in e.traceback for e in result.errors)
    assert worker_threads() == []


def test_a_stuck_thread_is_reported_and_waited_for_at_close(
    session_settings: Settings,
) -> None:
    simulator = ContentionSimulator(session_settings)
    result = simulator.run(lambda: time.sleep(2.5), workers=1, mode="thread", timeout=0.3)
    (error,) = result.errors
    assert error.exc_type == TIMEOUT_ERROR
    assert "is still running" in error.message
    assert worker_threads()  # a thread cannot be killed...
    simulator.close()  # ...but close waits for it
    assert worker_threads() == []


# -- locks held elsewhere -------------------------------------------------------------------


def test_hold_lock_releases_and_reaps_on_exception(
    contention: ContentionSimulator, make_session: Any
) -> None:
    session = counter(make_session)
    pids = []

    def fail_inside_the_block() -> None:
        with contention.hold_lock(session) as holder:
            pids.append(holder.pid)
            raise RuntimeError("test body failed")

    with pytest.raises(RuntimeError, match="test body failed"):
        fail_inside_the_block()
    (pid,) = pids
    assert gone(pid)
    with session.lock(timeout=0):
        pass


def test_hold_lock_of_a_lock_this_thread_holds_fails_in_time(
    contention: ContentionSimulator, make_session: Any
) -> None:
    session = counter(make_session)
    started = time.monotonic()
    with session.lock(), pytest.raises(SessionLockError) as info:  # noqa: SIM117
        with contention.hold_lock(session, timeout=0.5):
            pytest.fail("the holder cannot hold a lock this thread holds")
    assert info.value.details["session_id"] == session.session_id
    assert time.monotonic() - started < 10
    assert multiprocessing.active_children() == []


def test_close_kills_a_holder_left_open(session_settings: Settings, make_session: Any) -> None:
    session = counter(make_session)
    simulator = ContentionSimulator(session_settings)
    block = simulator.hold_lock(session.session_id)
    holder = block.__enter__()  # never exited: a test interrupted inside the block
    assert not gone(holder.pid)
    simulator.close()
    assert gone(holder.pid)
    with session.lock(timeout=0):
        pass
    simulator.close()  # idempotent


def test_stale_lock_creates_the_session_it_names(
    contention: ContentionSimulator, session_root: Path
) -> None:
    killed = contention.stale_lock("never-written")
    assert killed.lock_file == session_root / "never-written" / ".lock"
    assert killed.lock_file.exists()
    assert gone(killed.pid)
    with StateManager("never-written").lock(timeout=0):
        pass


def test_an_interrupted_run_leaves_nothing_running(tmp_path: Path) -> None:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    script = textwrap.dedent(
        """
        import os, signal, sys, threading, time
        from pytest_sessionstate import Settings
        from pytest_sessionstate.testing.contention import ContentionSimulator

        pid_dir = sys.argv[1]

        def sleeper():
            open(os.path.join(pid_dir, str(os.getpid())), "w").close()
            time.sleep(120)

        def interrupt():
            deadline = time.monotonic() + 30
            while len(os.listdir(pid_dir)) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt, daemon=True).start()
        simulator = ContentionSimulator(Settings(sys.argv[2]))  # never closed
        try:
            simulator.run(sleeper, workers=3, timeout=60)
        except KeyboardInterrupt:
            print("interrupted")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(pid_dir), str(tmp_path / "root")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "interrupted" in done.stdout, done.stderr
    pids = [int(p.name) for p in pid_dir.iterdir()]
    assert len(pids) == 3
    assert all(gone(pid) for pid in pids)


# -- interleave ---------------------------------------------------------------------------


def naive_increment(session_id: str) -> int:
    manager = StateManager(session_id)
    document = manager.read_json("session.json")
    document["n"] += 1
    manager.write_json("session.json", document)
    n: int = document["n"]
    return n


def test_a_pause_inside_the_write_lock_still_loses_the_naive_update(
    contention: ContentionSimulator, make_session: Any
) -> None:
    session = counter(make_session)
    outcome = contention.interleave(
        naive_increment, naive_increment, pause_at="temp-written", args=(session.session_id,)
    )
    # second read 0 while first was paused inside its write; second's write then
    # waited for first's lock, so first was resumed; both wrote 1
    assert outcome.paused
    assert outcome.resumed == "lock-waiting"
    assert outcome.values == (1, 1)
    assert session.read_json("session.json")["n"] == 1


def test_first_never_reaching_the_point_is_said(
    contention: ContentionSimulator, make_session: Any
) -> None:
    session = counter(make_session)
    outcome = contention.interleave(
        naive_increment, naive_increment, pause_at="removed", args=(session.session_id,)
    )
    assert not outcome.paused
    assert outcome.resumed == "not-paused"
    assert outcome.values == (1, 2)  # one after the other: no race


def test_a_later_thread_is_never_taken_for_first(
    contention: ContentionSimulator, make_session: Any
) -> None:
    # first ends without passing "read"; second's thread may get first's recycled
    # thread id, and must still run straight through instead of pausing as first
    session = counter(make_session)
    for expected in range(1, 21):
        outcome = contention.interleave(
            lambda _sid: None, naive_increment, args=(session.session_id,), timeout=5
        )
        assert outcome.resumed == "not-paused"
        assert outcome.second.value == expected


def test_interleave_reports_errors(contention: ContentionSimulator, make_session: Any) -> None:
    session = counter(make_session)

    def second(session_id: str) -> None:
        raise KeyError(session_id)

    outcome = contention.interleave(naive_increment, second, args=(session.session_id,))
    assert outcome.first.ok
    assert outcome.first.value == 1
    assert not outcome.ok
    assert outcome.second.error is not None
    assert outcome.second.error.worker == 1
    assert outcome.second.error.exc_type == "KeyError"
    assert "raise KeyError" in outcome.second.error.traceback
    with pytest.raises(ContentionError, match="KeyError"):
        outcome.values  # noqa: B018


def test_interleave_bounds_a_second_that_hangs(
    session_settings: Settings, make_session: Any
) -> None:
    session = counter(make_session)
    release = threading.Event()

    def hang(session_id: str) -> str:
        release.wait(10)
        return "late"

    simulator = ContentionSimulator(session_settings)
    started = time.monotonic()
    outcome = simulator.interleave(naive_increment, hang, args=(session.session_id,), timeout=0.5)
    assert time.monotonic() - started < 5
    assert outcome.resumed == "timeout"
    assert outcome.first.value == 1
    assert outcome.second.error is not None
    assert outcome.second.error.exc_type == TIMEOUT_ERROR
    release.set()
    simulator.close()
    assert worker_threads() == []


def test_no_listener_is_left_installed(contention: ContentionSimulator, make_session: Any) -> None:
    from pytest_sessionstate import probes

    before = probes.listeners
    session = counter(make_session)
    contention.interleave(naive_increment, naive_increment, args=(session.session_id,))
    contention.run(naive_increment, args=(session.session_id,), workers=2, mode="thread")
    assert probes.listeners == before
