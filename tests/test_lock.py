"""The session lock: timeouts, exclusion, re-entrancy, dead holders, frozen clocks."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from pytest_sessionstate import (
    SessionLockError,
    SessionNotFoundError,
    SessionValueError,
    Settings,
    StateManager,
    locking,
    probes,
)
from pytest_sessionstate.clock import real_monotonic

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"
)

ctx = multiprocessing.get_context("fork")
WAIT = 15.0  # bound on every wait for another process or thread


@pytest.fixture
def cfg(tmp_path):
    return Settings(tmp_path / "root", lock_timeout=5, durable=False)


@pytest.fixture
def sm(cfg):
    manager = StateManager("s1", settings=cfg)
    manager.write_json("a.json", {"n": 0})
    return manager


def _hold(root, sid, ready, release):
    manager = StateManager(sid, settings=Settings(root, durable=False))
    with manager.lock(timeout=WAIT):
        ready.set()
        release.poll(WAIT)  # a pipe, not an Event: a killed waiter would wedge an Event


class Holder:
    """Another process that holds the session's lock until released (or killed)."""

    def __init__(self, manager):
        self.ready = ctx.Event()
        receive, self._send = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_hold,
            args=(str(manager.settings.root), manager.session_id, self.ready, receive),
        )

    def release(self):
        """Let the holder leave its ``with lock()`` block."""
        self._send.send(True)

    def __enter__(self):
        self.proc.start()
        assert self.ready.wait(WAIT), "the holder did not get the lock"
        return self

    def __exit__(self, *exc):
        if self.proc.is_alive():
            self.release()
        self.proc.join(WAIT)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(WAIT)


def free_now(manager):
    """Whether the lock can be taken with a single attempt."""
    try:
        with manager.lock(timeout=0):
            return True
    except SessionLockError:
        return False


# -- timeouts --------------------------------------------------------------------------------


def test_timeout_zero_is_one_attempt_and_fast(sm):
    slow_default = StateManager("s1", settings=sm.settings.replace(lock_timeout=30))
    with Holder(sm):
        start = real_monotonic()
        with pytest.raises(SessionLockError) as info, slow_default.lock(timeout=0):
            pass
        elapsed = real_monotonic() - start
    assert elapsed < 0.5  # never read as "use the default" (30 s)
    assert info.value.details["session_id"] == "s1"
    assert info.value.details["timeout"] == 0


def test_timeout_none_uses_the_settings(sm):
    short = StateManager("s1", settings=sm.settings.replace(lock_timeout=0.3))
    with Holder(sm):
        start = real_monotonic()
        with pytest.raises(SessionLockError) as info, short.lock():
            pass
        elapsed = real_monotonic() - start
    assert 0.25 <= elapsed < 5
    assert info.value.details == {**info.value.details, "session_id": "s1", "timeout": 0.3}


def test_settings_timeout_zero_means_one_attempt(sm):
    zero = StateManager("s1", settings=sm.settings.replace(lock_timeout=0))
    with Holder(sm):
        start = real_monotonic()
        with pytest.raises(SessionLockError), zero.lock():
            pass
        assert real_monotonic() - start < 0.5


def test_positive_timeout_waits_in_real_seconds_then_fails(sm):
    with Holder(sm):
        start = real_monotonic()
        with pytest.raises(SessionLockError) as info, sm.lock(timeout=0.4):
            pass
        elapsed = real_monotonic() - start
    assert 0.35 <= elapsed < 5
    assert info.value.details["timeout"] == 0.4
    assert free_now(sm)


def test_positive_timeout_gets_the_lock_when_released_in_time(sm):
    with Holder(sm) as holder:
        threading.Timer(0.3, holder.release).start()
        start = real_monotonic()
        with sm.lock(timeout=WAIT):
            waited = real_monotonic() - start
            assert not free_in_other_process(sm)
    assert 0.2 <= waited < WAIT


def test_negative_timeout_waits_for_ever(sm):
    with Holder(sm) as holder:
        threading.Timer(0.5, holder.release).start()
        start = real_monotonic()
        with sm.lock(timeout=-1):
            waited = real_monotonic() - start
    assert waited >= 0.4


def test_negative_settings_timeout_waits_for_ever(sm):
    forever = StateManager("s1", settings=sm.settings.replace(lock_timeout=-1))
    with Holder(sm) as holder:
        threading.Timer(0.5, holder.release).start()
        start = real_monotonic()
        with forever.lock():
            assert real_monotonic() - start >= 0.4


@pytest.mark.parametrize("timeout", ["1", True, float("nan"), object()])
def test_bad_timeouts_are_refused(sm, timeout):
    with pytest.raises(SessionValueError):
        sm.lock(timeout=timeout)


# -- exclusion ---------------------------------------------------------------------------------


def _try_lock(root, sid, result):
    manager = StateManager(sid, settings=Settings(root, durable=False))
    try:
        with manager.lock(timeout=0):
            result.value = 1
    except SessionLockError:
        result.value = 0


def free_in_other_process(manager):
    result = ctx.Value("i", -1)
    proc = ctx.Process(
        target=_try_lock, args=(str(manager.settings.root), manager.session_id, result)
    )
    proc.start()
    proc.join(WAIT)
    assert proc.exitcode == 0
    return result.value == 1


def test_excludes_other_processes(sm):
    assert free_in_other_process(sm)
    with sm.lock():
        assert not free_in_other_process(sm)
    assert free_in_other_process(sm)


def test_excludes_other_threads(sm):
    results = []

    def attempt(timeout):
        try:
            with StateManager("s1", settings=sm.settings).lock(timeout=timeout):
                results.append(True)
        except SessionLockError:
            results.append(False)

    with sm.lock():
        for timeout in (0, 0.2):
            thread = threading.Thread(target=attempt, args=(timeout,))
            thread.start()
            thread.join(WAIT)
    thread = threading.Thread(target=attempt, args=(0,))
    thread.start()
    thread.join(WAIT)
    assert results == [False, False, True]


def test_a_waiting_thread_gets_the_lock_after_release(sm):
    got = threading.Event()

    def waiter():
        with sm.lock(timeout=WAIT):
            got.set()

    with sm.lock():
        thread = threading.Thread(target=waiter)
        thread.start()
        assert not got.wait(0.2)
    assert got.wait(WAIT)
    thread.join(WAIT)


def eventually(predicate, seconds=5.0):
    """Poll ``predicate`` until it holds or ``seconds`` (real time) pass."""
    deadline = real_monotonic() + seconds
    while real_monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_timed_out_waiter_does_not_keep_the_lock_from_other_processes(sm):
    with Holder(sm), pytest.raises(SessionLockError), sm.lock(timeout=0.2):
        pass
    # The abandoned kernel waiter is granted the lock now, and must let go of it.
    assert eventually(lambda: free_in_other_process(sm))
    assert free_now(sm)


def test_a_timed_out_waiter_is_adopted_by_the_next_attempt(sm):
    with Holder(sm) as holder:
        with pytest.raises(SessionLockError), sm.lock(timeout=0.2):
            pass
        with pytest.raises(SessionLockError), sm.lock(timeout=0):
            pass
        holder.release()
        holder.proc.join(WAIT)
        with sm.lock(timeout=WAIT):
            assert not free_in_other_process(sm)
    assert free_in_other_process(sm)


# -- re-entrancy -----------------------------------------------------------------------------


def test_reentrant_nesting_and_writes_inside_the_lock(cfg, sm):
    # A short default: a self-deadlock would raise SessionLockError, not hang.
    quick = cfg.replace(lock_timeout=1)
    first = StateManager("s1", settings=quick)
    second = StateManager("s1", settings=quick)
    with first.lock():
        with first.lock(), second.lock(timeout=0):
            second.write_json("a.json", {"n": 1})
            assert first.update_json("a.json", {"n": 2}) == {"n": 2}
            with second.transaction("a.json") as doc:
                doc["n"] += 1
            assert not free_in_other_process(first)
        assert not free_in_other_process(first)  # still held after the inner exit
        with first.transaction("b.json", default={}) as doc:
            doc["x"] = 1
        second.delete("b.json")
    assert free_in_other_process(first)
    assert first.read_json("a.json") == {"n": 3}


def test_reentrant_through_another_spelling_of_the_root(sm, tmp_path):
    alias = tmp_path / "alias"
    alias.symlink_to(sm.settings.root)
    other = StateManager("s1", settings=Settings(alias, lock_timeout=1, durable=False))
    with sm.lock(), other.lock(timeout=0):
        other.update_json("a.json", {"n": 5})  # no self-deadlock via the second path
        assert not free_in_other_process(sm)
    assert sm.read_json("a.json") == {"n": 5}
    with other.lock():
        assert not free_in_other_process(sm)


def test_reentrancy_is_per_thread(sm):
    blocked = []

    def other():
        try:
            with sm.lock(timeout=0):
                blocked.append(False)
        except SessionLockError:
            blocked.append(True)

    with sm.lock(), sm.lock():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(WAIT)
    assert blocked == [True]


def test_release_by_a_thread_that_does_not_hold_it_is_refused(sm):
    context = sm.lock()
    with pytest.raises(RuntimeError):
        context.__exit__(None, None, None)


def test_lock_and_release_probe_points_on_the_outermost_level_only(sm):
    seen = []
    with probes.listen(lambda event: seen.append(event.point)), sm.lock(), sm.lock():
        pass
    assert seen == ["lock-acquired", "lock-released"]


# -- dead holders and the lock file ---------------------------------------------------------------


def test_a_holder_killed_with_sigkill_frees_the_lock_at_once(sm):
    holder = Holder(sm)
    with holder:
        assert not free_now(sm)
        os.kill(holder.proc.pid, signal.SIGKILL)
        holder.proc.join(WAIT)
        assert holder.proc.exitcode == -signal.SIGKILL
        assert free_now(sm)  # a single attempt, no waiting


def test_a_waiter_in_another_process_gets_the_lock_when_the_holder_is_killed(sm):
    with Holder(sm) as holder:
        result = ctx.Value("i", -1)
        proc = ctx.Process(target=_wait_for_lock, args=(str(sm.settings.root), "s1", result))
        proc.start()
        time.sleep(0.2)
        os.kill(holder.proc.pid, signal.SIGKILL)
        proc.join(WAIT)
        holder.proc.join(WAIT)
    assert result.value == 1


def _wait_for_lock(root, sid, result):
    with StateManager(sid, settings=Settings(root, durable=False)).lock(timeout=WAIT):
        result.value = 1


def test_the_lock_file_is_never_deleted(sm):
    inode = os.stat(sm.lock_file).st_ino
    with sm.lock(), sm.lock():
        pass
    with pytest.raises(KeyError), sm.lock():
        raise KeyError("inside")
    with Holder(sm), pytest.raises(SessionLockError), sm.lock(timeout=0.1):
        pass
    sm.write_json("a.json", {"n": 1})
    assert sm.lock_file.exists()
    assert os.stat(sm.lock_file).st_ino == inode


def test_delete_and_writes_wait_for_the_lock(sm):
    quick = StateManager("s1", settings=sm.settings.replace(lock_timeout=0.2))
    before = sm.read_json("a.json")
    with Holder(sm):
        for action in (
            quick.delete,
            lambda: quick.delete("a.json"),
            lambda: quick.write_json("a.json", {"n": 9}),
            lambda: quick.update_json("a.json", {"n": 9}),
            lambda: quick.transaction("a.json").__enter__(),
        ):
            with pytest.raises(SessionLockError):
                action()
    assert sm.read_json("a.json") == before
    assert sm.list_files() == ["a.json"]


def test_lock_creates_the_session_directory(cfg):
    fresh = StateManager("fresh", settings=cfg)
    with fresh.lock(timeout=0):
        assert fresh.session_dir.is_dir()
        assert fresh.lock_file.exists()
    assert os.stat(fresh.session_dir).st_mode & 0o777 == 0o700


# -- frozen clocks ---------------------------------------------------------------------------------


FROZEN_ATTEMPT = """
import sys, time
from pytest_sessionstate import SessionLockError, Settings, StateManager

root, library = sys.argv[1], sys.argv[2]
manager = StateManager("s1", settings=Settings(root, durable=False))
if library == "time-machine":
    import time_machine

    clock = time_machine.travel("2024-01-01 12:00:00", tick=False)
else:
    from freezegun import freeze_time

    clock = freeze_time("2024-01-01 12:00:00", tick=library == "freezegun-tick")
with clock:
    frozen_at = time.time()
    try:
        with manager.lock(timeout=0.3):
            print("acquired a lock that another process holds")
    except SessionLockError as exc:
        print("lock-error", exc.details["timeout"])
    if library != "freezegun-tick":
        print("clock-frozen", time.time() == frozen_at)
"""


@pytest.mark.parametrize("library", ["freezegun", "freezegun-tick", "time-machine"])
def test_frozen_clocks_never_turn_a_timeout_into_a_hang(sm, library):
    # A fresh interpreter: multiprocessing's frames would put freezegun's ignore list
    # (which names "multiprocessing" and "threading") in force and hide the problem.
    with Holder(sm):
        try:
            done = subprocess.run(
                [sys.executable, "-c", FROZEN_ATTEMPT, str(sm.settings.root), library],
                capture_output=True,
                text=True,
                check=False,
                timeout=20,  # bounded: a hang fails the test instead of stalling the run
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"lock(timeout=0.3) under {library} hung")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split("\n")
    assert "lock-error 0.3" in lines
    if library != "freezegun-tick":
        assert "clock-frozen True" in lines  # the library was really in force


@pytest.mark.timeout(30)  # pytest-timeout bounds it: a hang fails instead of stalling
def test_frozen_clock_in_this_process(sm):
    freezegun = pytest.importorskip("freezegun")
    with Holder(sm), freezegun.freeze_time("2024-01-01"):
        frozen_at = time.time()
        start = real_monotonic()
        with pytest.raises(SessionLockError), sm.lock(timeout=0.3):
            pass
        assert time.time() == frozen_at
        assert real_monotonic() - start < 10


# -- delete while others wait ------------------------------------------------------------------


def _increment_inside_lock(root, sid, waiting, count, marker_dir, violations):
    manager = StateManager(sid, settings=Settings(root, durable=False))

    def on_event(event):
        if event.point == "lock-waiting":
            waiting.set()

    with probes.listen(on_event), manager.lock(timeout=WAIT):
        _exclusive_increments(manager, count, marker_dir, violations)


def _exclusive_increments(manager, count, marker_dir, violations):
    marker = os.path.join(marker_dir, "holder")
    for _ in range(count):
        with manager.lock(timeout=WAIT):
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                with violations.get_lock():
                    violations.value += 1
                fd = None
            with manager.transaction("count.json", default={"n": 0}) as doc:
                doc["n"] += 1
            time.sleep(0.001)
            if fd is not None:
                os.close(fd)
                os.unlink(marker)


def _plain_increments(root, sid, count, marker_dir, violations):
    manager = StateManager(sid, settings=Settings(root, durable=False))
    _exclusive_increments(manager, count, marker_dir, violations)


def test_delete_while_another_process_waits_keeps_exclusion(sm, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    root = str(sm.settings.root)
    waiting, violations = ctx.Event(), ctx.Value("i", 0)
    count = 30
    with sm.lock():
        waiter = ctx.Process(
            target=_increment_inside_lock,
            args=(root, "s1", waiting, count, str(markers), violations),
        )
        waiter.start()
        assert waiting.wait(WAIT), "the other process never waited for the lock"
        sm.delete()  # inside the block: emptied now, the directory goes at the block's end
        assert not sm.exists()
        assert sm.list_files() == []
    # The waiter, queued on the old lock file, starts over on a new session (it may have
    # made it already: no assertion on the directory here, that would race).
    others = [
        ctx.Process(target=_plain_increments, args=(root, "s1", count, str(markers), violations))
        for _ in range(2)
    ]
    for proc in others:
        proc.start()
    for proc in [waiter, *others]:
        proc.join(WAIT * 2)
        if proc.is_alive():
            proc.kill()
    assert [proc.exitcode for proc in [waiter, *others]] == [0, 0, 0]
    assert violations.value == 0
    assert sm.read_json("count.json") == {"n": 3 * count}


# -- the lock file descriptor kept between acquisitions ----------------------------------------


def test_a_forked_child_does_not_share_the_parents_kept_descriptor(sm):
    # The parent keeps its (unlocked) lock file descriptor after a release; a forked
    # child inherits it.  Were the child to lock through it, parent and child would
    # share one open file description, and the parent's flock would not exclude it.
    with sm.lock():
        pass
    with Holder(sm):
        assert not free_now(sm)
    assert free_now(sm)


def test_a_session_deleted_and_recreated_is_locked_on_its_new_file(sm):
    other = StateManager("s1", settings=sm.settings)
    with sm.lock():
        pass  # sm's process now keeps a descriptor of the first lock file
    other.delete()
    other.write_json("a.json", {"n": 1})  # a new directory, a new lock file
    with Holder(sm):
        assert not free_now(sm)  # the kept descriptor of the old file is not trusted
    with sm.lock(timeout=0):
        assert sm.read_json("a.json") == {"n": 1}


def test_update_of_a_missing_session_creates_nothing(cfg):
    ghost = StateManager("ghost", settings=cfg)
    with pytest.raises(SessionNotFoundError):
        ghost.update_json("a.json", {"x": 1})
    with pytest.raises(SessionNotFoundError), ghost.transaction("a.json"):
        pass
    with pytest.raises(SessionNotFoundError):
        ghost.delete()
    assert not ghost.session_dir.exists()


def _descriptors_under(root):
    """How many of this process's descriptors are files under ``root`` (the test's own)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}").startswith(str(root) + os.sep):
                count += 1
    return count


def test_kept_descriptors_are_bounded_whatever_the_number_of_managers(cfg):
    managers = [StateManager(f"s{i}", settings=cfg) for i in range(200)]
    for manager in managers:
        manager.write_json("a.json", {"n": 1})
    kept = _descriptors_under(cfg.root)
    assert 1 <= kept <= locking.MAX_IDLE  # the sessions used last keep theirs, no more
    for manager in managers:  # all of them still work
        with manager.lock(timeout=0):
            assert manager.read_json("a.json") == {"n": 1}
    assert _descriptors_under(cfg.root) <= locking.MAX_IDLE
