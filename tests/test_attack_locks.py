"""The lock under attack (issue 11): interrupts, fork, delete inside a lock, EMFILE,
overlapping ``use_settings``, second paths, deletes racing writes, SIGKILLed deletes.

Every test here failed on the core before the rewrite (commit 5d06acd) unless its
docstring says otherwise; each says what it proves.  Other processes are real
(``subprocess`` peers driven through pipes, ``os.fork`` children), signals are real
(``pthread_kill`` of the main thread: SIGALRM is left to pytest-timeout), and every
wait is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from pytest_sessionstate import (
    SessionLockError,
    SessionNotFoundError,
    Settings,
    StateManager,
    current_settings,
    list_sessions,
    probes,
    use_settings,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"
)

WAIT = 15.0  # bound on every wait for another process or thread

# A peer process driven by one-line commands on stdin, answering one line each.
PEER = r"""
import sys, time
from pytest_sessionstate import SessionError, Settings, StateManager

root, sid = sys.argv[1], sys.argv[2]
manager = StateManager(sid, settings=Settings(root, durable=False))
held = None

def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

reply("up")
for line in sys.stdin:
    command, *args = line.split()
    try:
        if command == "hold":
            held = manager.lock(timeout=30)
            held.__enter__()
            reply("held")
        elif command == "release":
            held.__exit__(None, None, None)
            held = None
            reply("released")
        elif command == "hold_for":
            with manager.lock(timeout=30):
                reply("held")
                time.sleep(float(args[0]))
            reply("released")
        elif command == "try":
            with manager.lock(timeout=float(args[0])):
                pass
            reply("ok")
        elif command == "write":
            settings = Settings(root, durable=False, lock_timeout=float(args[0]))
            StateManager(sid, settings=settings).write_json("peer.json", {"peer": True})
            reply("ok")
    except SessionError as exc:
        reply(type(exc).__name__)
"""


class Peer:
    """Another process acting on one session, one command at a time."""

    def __init__(self, root, sid):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PEER, str(root), sid],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._buffer = b""
        assert self.read() == "up"

    def send(self, command):
        self.proc.stdin.write(command.encode() + b"\n")

    def read(self, timeout=WAIT):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            assert ready, f"the peer did not answer within {timeout}s"
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            assert chunk, "the peer died"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def ask(self, command, timeout=WAIT):
        self.send(command)
        return self.read(timeout)

    def close(self):
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT)
        self.proc.stdout.close()


@pytest.fixture
def cfg(tmp_path):
    return Settings(tmp_path / "root", lock_timeout=5, durable=False)


@pytest.fixture
def sm(cfg):
    manager = StateManager("s1", settings=cfg)
    manager.write_json("a.json", {"n": 0})
    return manager


@pytest.fixture
def peer(sm):
    other = Peer(sm.settings.root, sm.session_id)
    yield other
    other.close()


# -- exceptions raised while lock() waits (case 5) ---------------------------------


class Interrupt(Exception):
    """What the test's signal handler raises (like pytest-timeout's signal method)."""


class Interrupter:
    """Sends SIGUSR1 to the main thread after a delay; the handler raises ``exc_type``
    while armed.  Leaving waits (bounded) until the signal was handled, so no signal
    reaches the restored handler."""

    def __init__(self, delay, exc_type=Interrupt):
        if threading.current_thread() is not threading.main_thread():
            pytest.skip("signal handlers run in the main thread only")
        self.delay = delay
        self.exc_type = exc_type
        self.armed = True
        self.fired = threading.Event()

    def _handler(self, signum, frame):
        self.fired.set()
        if self.armed:
            self.armed = False
            raise self.exc_type

    def __enter__(self):
        self._old = signal.signal(signal.SIGUSR1, self._handler)
        main = threading.main_thread().ident
        self._timer = threading.Timer(self.delay, signal.pthread_kill, (main, signal.SIGUSR1))
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self.armed = False
        self._timer.join(WAIT)
        deadline = time.monotonic() + WAIT
        while not self.fired.is_set() and time.monotonic() < deadline:
            time.sleep(0.001)  # lets the pending handler run
        signal.signal(signal.SIGUSR1, self._old)
        assert self.fired.is_set(), "the signal was never handled"


@pytest.mark.parametrize("exc_type", [Interrupt, KeyboardInterrupt])
@pytest.mark.parametrize("timeout", [WAIT, -1, 10**400], ids=["bounded", "forever", "huge"])
def test_an_exception_raised_while_lock_waits_leaves_the_lock_free(sm, peer, exc_type, timeout):
    """Case 5: a signal handler's exception (or KeyboardInterrupt) out of a wait for a
    lock held by another process abandons nothing: once the holder lets go, another
    process gets the lock.  Before the rewrite the helper thread was granted the lock
    afterwards and nobody released it (the peer's ``try 5`` timed out)."""
    assert peer.ask("hold") == "held"
    with pytest.raises(exc_type), Interrupter(0.3, exc_type), sm.lock(timeout=timeout):
        pytest.fail("got a lock that another process holds")
    assert peer.ask("release") == "released"
    assert peer.ask("try 5") == "ok"
    with sm.lock(timeout=5):  # and this process is not wedged either
        assert sm.read_json("a.json") == {"n": 0}
    assert peer.ask("try 5") == "ok"


def test_interrupts_at_random_moments_of_a_wait_never_leak_the_lock(sm, peer):
    """Class of case 5: the signal lands at a random moment (before the wait, during
    it, around the grant, inside the acquisition's bookkeeping); whether this process
    got the lock or was interrupted, afterwards another process gets it at once."""
    rng = random.Random(11)
    outcomes = {"got": 0, "interrupted": 0}
    for _ in range(30):
        hold = rng.uniform(0.0, 0.03)
        delay = rng.uniform(0.0, 0.05)
        timeout = rng.choice([WAIT, -1])
        assert peer.ask(f"hold_for {hold}") == "held"
        interrupter = Interrupter(delay)
        try:
            with interrupter, sm.lock(timeout=timeout):
                interrupter.armed = False  # from here on it is the block's business
                outcomes["got"] += 1
        except Interrupt:
            outcomes["interrupted"] += 1
        assert peer.read() == "released"
        assert peer.ask("try 5") == "ok", outcomes
    with sm.lock(timeout=5):
        pass
    assert sum(outcomes.values()) == 30


# -- fork (case 6) -------------------------------------------------------------------


def _fork_child(root, sid):
    """Fork a child that waits for one byte: ``L`` makes it take the lock (timeout 5)
    and exit 0 if it could; anything else makes it exit 0 at once."""
    receive, send = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            os.close(send)
            ready, _, _ = select.select([receive], [], [], 2 * WAIT)
            command = os.read(receive, 1) if ready else b""
            code = 0
            if command == b"L":
                settings = Settings(root, durable=False)
                try:
                    with StateManager(sid, settings=settings).lock(timeout=5):
                        pass
                except BaseException:
                    code = 1
        finally:
            os._exit(code)
    os.close(receive)
    return pid, send


def _finish_child(pid, send, command=b"x"):
    """Send the child its command and reap it (bounded); return its exit code."""
    with contextlib.suppress(OSError):
        os.write(send, command)
    os.close(send)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("a forked child did not finish in time")


def test_a_child_forked_while_a_thread_waits_never_holds_the_lock(sm, peer):
    """Case 6: fork while another thread waits for the lock (then times out, leaving its
    helper queued).  When the peer lets go, the helper is granted and lets go; the child
    holds a copy of nothing, so the peer gets the lock while the child lives, and the
    child itself can take the lock.  Before the rewrite the child's inherited copy of
    the waiter's descriptor kept the lock for the child's whole life."""
    assert peer.ask("hold") == "held"
    waiting = threading.Event()
    results = []

    def on_event(event):
        if event.point == "lock-waiting":
            waiting.set()

    def waiter():
        try:
            with sm.lock(timeout=1.0):
                results.append("got")
        except SessionLockError:
            results.append("timed out")

    with probes.listen(on_event):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(WAIT), "the thread never waited"
        pid, send = _fork_child(str(sm.settings.root), sm.session_id)
    try:
        thread.join(WAIT)
        assert not thread.is_alive()
        assert results == ["timed out"]
        assert peer.ask("release") == "released"
        assert peer.ask("try 5") == "ok"  # the child is alive and holds nothing
        assert peer.ask("write 5") == "ok"
    finally:
        code = _finish_child(pid, send, b"L")
    assert code == 0, "the child could not take the lock itself"
    with sm.lock(timeout=5):
        pass


def test_children_forked_at_random_moments_never_hold_the_lock(sm, peer):
    """Class of case 6: fork at random moments while two threads take, hold, wait for
    and release the lock: no child holds or blocks it, and each child can take it."""
    rng = random.Random(6)
    stop = threading.Event()
    errors = []

    def churn(name):
        count = 0
        try:
            while not stop.is_set():
                with sm.lock(timeout=WAIT):
                    count += 1
                    sm.write_json(f"{name}.json", {"n": count})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(f"t{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    children = []
    try:
        for _ in range(8):
            time.sleep(rng.uniform(0.0, 0.02))
            children.append(_fork_child(str(sm.settings.root), sm.session_id))
    finally:
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    codes = []
    try:
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert peer.ask("try 5") == "ok"  # all children alive, none holds it
    finally:
        for pid, send in children:
            codes.append(_finish_child(pid, send, b"L"))
    assert codes == [0] * len(children)


# -- delete() inside a held lock (case 7) --------------------------------------------


def test_delete_inside_a_lock_keeps_exclusion_until_the_block_exits(sm, peer, cfg):
    """Case 7: after ``delete()`` of the whole session inside ``lock()``, another
    process can neither lock nor write the session until the outermost block exits;
    then the session is gone.  Before the rewrite the directory and its lock file went
    at once and the peer's write succeeded inside our block."""
    with sm.lock(timeout=5):
        with sm.lock(timeout=5):
            sm.delete()
            assert not sm.exists()
            assert sm.list_files() == []
            with pytest.raises(SessionNotFoundError):
                sm.read_json("a.json")
            with pytest.raises(SessionNotFoundError):
                sm.delete()
            assert peer.ask("try 0.3") == "SessionLockError"
        assert peer.ask("write 0.3") == "SessionLockError"
        assert not sm.exists()
    assert not sm.exists()
    assert "s1" not in list_sessions(settings=cfg)
    assert peer.ask("write 5") == "ok"  # a new session, locked as usual
    assert sm.list_files() == ["peer.json"]


def test_a_write_after_delete_inside_a_lock_makes_the_session_anew(sm, peer, cfg):
    """Case 7, the documented rule: a write in the block after ``delete()`` makes the
    session anew, holding only what was written after the delete, and it stays; the
    block still excludes others.  Before the rewrite that write raised a raw
    ``FileNotFoundError``."""
    sm.write_json("b.json", {"old": True})
    with sm.lock(timeout=5):
        sm.delete()
        sm.write_json("c.json", {"new": True})
        assert sm.exists()
        assert sm.list_files() == ["c.json"]
        assert peer.ask("try 0.3") == "SessionLockError"
        sm.update_json("c.json", {"more": 1})
    assert sm.list_files() == ["c.json"]
    assert sm.read_json("c.json") == {"new": True, "more": 1}
    assert list_sessions(settings=cfg) == ["s1"]
    assert peer.ask("try 5") == "ok"


# -- many live StateManagers under a low RLIMIT_NOFILE (case 8) ----------------------

EMFILE_SCRIPT = r"""
import errno, json, os, resource, sys
from pytest_sessionstate import Settings, StateManager, list_sessions

root = sys.argv[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
cfg = Settings(root, durable=True, lock_timeout=5)
managers = [StateManager(f"s{i}", settings=cfg) for i in range(300)]
for i, manager in enumerate(managers):
    manager.write_json("a.json", {"i": i})
for i, manager in enumerate(managers):
    with manager.lock(timeout=0):
        assert manager.read_json("a.json") == {"i": i}
    manager.update_json("a.json", {"j": i})
results = []
for free in range(12):
    fillers = []
    try:
        while True:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE, exc
    for _ in range(free):
        os.close(fillers.pop())
    manager = StateManager(f"new{free}", settings=cfg)
    try:
        manager.write_json("a.json", {"free": free})
        outcome = "ok"
    except OSError as exc:
        outcome = errno.errorcode.get(exc.errno, repr(exc))
    except BaseException as exc:
        outcome = repr(exc)
    for fd in fillers:
        os.close(fd)
    results.append([free, outcome])
print(json.dumps({"results": results, "sessions": list_sessions(settings=cfg),
                  "entries": sorted(os.listdir(root))}))
"""


def test_many_live_managers_under_a_low_nofile_limit_and_no_empty_session(tmp_path):
    """Case 8: 300 live StateManagers, each used, under ``RLIMIT_NOFILE`` 64 in a
    subprocess: every write, lock and update works.  Then a first write is tried with
    0..11 descriptors left: it succeeds, or fails with ``EMFILE`` and leaves no session
    behind (not even an empty directory).  Before the rewrite the 60th session failed
    with EMFILE (one kept descriptor per session)."""
    root = tmp_path / "root"
    done = subprocess.run(
        [sys.executable, "-c", EMFILE_SCRIPT, str(root)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    outcomes = dict(report["results"])
    assert set(outcomes.values()) <= {"ok", "EMFILE"}, outcomes
    assert outcomes[0] == "EMFILE", outcomes
    assert outcomes[11] == "ok", outcomes
    expected = {f"s{i}" for i in range(300)}
    expected |= {f"new{free}" for free, outcome in outcomes.items() if outcome == "ok"}
    assert set(report["sessions"]) == expected
    assert set(report["entries"]) == expected  # no tombstone, no temp, no empty session
    for free, outcome in outcomes.items():
        if outcome == "ok":
            manager = StateManager(f"new{free}", settings=Settings(root))
            assert manager.list_files() == ["a.json"]
            assert manager.read_json("a.json") == {"free": free}


# -- use_settings in two threads (case 9) ---------------------------------------------


@pytest.mark.parametrize("first_out", ["first_in", "second_in"])
def test_use_settings_blocks_overlapping_in_two_threads_restore_the_original(tmp_path, first_out):
    """Case 9: two threads' ``use_settings`` blocks overlap without nesting (A enters,
    B enters, then they exit in either order): when both have exited the settings are
    what they were before.  Before the rewrite the first to exit restored the original
    and the second restored A's, which stayed in force."""
    original = current_settings()
    a = Settings(tmp_path / "a")
    b = Settings(tmp_path / "b")
    entered = {name: threading.Event() for name in "ab"}
    leave = {name: threading.Event() for name in "ab"}
    errors = []

    def block(name, settings):
        try:
            with use_settings(settings):
                entered[name].set()
                assert leave[name].wait(WAIT)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = {
        name: threading.Thread(target=block, args=(name, s))
        for name, s in "ab" and (("a", a), ("b", b))
    }
    threads["a"].start()
    assert entered["a"].wait(WAIT)
    assert current_settings() is a
    threads["b"].start()
    assert entered["b"].wait(WAIT)
    assert current_settings() is b
    order = ["a", "b"] if first_out == "first_in" else ["b", "a"]
    leave[order[0]].set()
    threads[order[0]].join(WAIT)
    assert current_settings() is (b if order[0] == "a" else a)
    leave[order[1]].set()
    threads[order[1]].join(WAIT)
    assert not any(thread.is_alive() for thread in threads.values())
    assert errors == []
    assert current_settings() is original


# -- a second path to the same session (case 10) --------------------------------------


def _nested_through(sm, other, peer):
    with sm.lock(timeout=5):
        with other.lock(timeout=2):
            other.update_json("a.json", {"n": 1})
        other.write_json("b.json", {"via": "other"})
        assert peer.ask("try 0.3") == "SessionLockError"
    assert sm.read_json("a.json") == {"n": 1}
    assert sm.list_files() == ["a.json", "b.json"]
    assert peer.ask("try 5") == "ok"


def test_nested_lock_through_a_symlinked_root_does_not_deadlock(sm, peer, tmp_path):
    """Case 10, symlinked alias of the root.  (The old core resolved the root's path,
    so this one passed before too; it guards the new (dev, ino) identity.)"""
    alias = tmp_path / "alias"
    alias.symlink_to(sm.settings.root)
    other = StateManager("s1", settings=sm.settings.replace(root=alias))
    _nested_through(sm, other, peer)


@pytest.fixture
def bind_mount(tmp_path):
    """A bind mount of ``tmp_path/root`` at ``tmp_path/mnt`` (skipped where impossible)."""
    target = tmp_path / "mnt"
    target.mkdir()
    source = tmp_path / "root"
    source.mkdir(exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "--bind", str(source), str(target)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"mount --bind cannot run here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"mount --bind does not work here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, timeout=30, check=False)
        if os.path.ismount(target):  # pragma: no cover
            subprocess.run(
                ["umount", "-l", str(target)], capture_output=True, timeout=30, check=False
            )


def test_nested_lock_through_a_bind_mount_does_not_deadlock(sm, peer, bind_mount):
    """Case 10: a nested lock taken through a bind mount of the root reaches the same
    lock (found by the directory's (dev, ino)), so it neither deadlocks nor lets
    another process in.  Before the rewrite the inner lock() waited for its own thread
    and timed out (SessionLockError after 2 s)."""
    other = StateManager("s1", settings=sm.settings.replace(root=bind_mount))
    _nested_through(sm, other, peer)


# -- huge timeouts (case 15, timeouts only) -------------------------------------------


@pytest.mark.parametrize("huge", [10**400, -(10**400)])
def test_huge_timeouts_mean_for_ever(sm, peer, huge):
    """Case 15 (timeouts): ``lock(timeout=10**400)`` and ``Settings(lock_timeout=
    10**400)`` wait for ever (a negative one too), instead of raising OverflowError."""
    assert Settings(sm.settings.root, lock_timeout=huge).lock_timeout == (
        math.inf if huge > 0 else -math.inf
    )
    with sm.lock(timeout=huge):
        pass
    assert peer.ask("hold") == "held"
    results = []
    patient = StateManager("s1", settings=Settings(sm.settings.root, lock_timeout=huge))

    def wait():
        with sm.lock(timeout=huge):
            results.append("lock")
        patient.update_json("a.json", {"n": 5})
        results.append("update")

    thread = threading.Thread(target=wait)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive()
    assert results == []
    assert peer.ask("release") == "released"
    thread.join(WAIT)
    assert not thread.is_alive()
    assert results == ["lock", "update"]


# -- whole-session delete racing creating writes (case 13) ----------------------------

RACE_SCRIPT = r"""
import json, sys
from pytest_sessionstate import SessionError, SessionNotFoundError, Settings, StateManager

root, role, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = Settings(root, durable=False, lock_timeout=60)
bad = []
for i in range(count):
    manager = StateManager("s1", settings=settings)
    try:
        if role == "delete":
            manager.delete()
        else:
            manager.write_json(f"{role}.json", {"i": i})
    except SessionNotFoundError:
        pass
    except BaseException as exc:
        import traceback
        bad.append(traceback.format_exc())
print(json.dumps(bad))
"""


def _race_operation(manager, rng, index):
    choice = rng.randrange(7)
    if choice == 0:
        manager.delete()
    elif choice == 1:
        manager.write_json(f"t{index}.json", {"i": index})
    elif choice == 2:
        manager.update_json("a.json", {"i": index})
    elif choice == 3:
        manager.read_json("a.json")
    elif choice == 4:
        manager.delete("a.json")
    elif choice == 5:
        with manager.transaction("a.json", default={}) as document:
            document["i"] = index
    else:
        manager.list_files()
        manager.exists()
        manager.exists("a.json")


def test_whole_session_deletes_racing_creating_writes_raise_only_documented_errors(cfg):
    """Case 13: whole-session ``delete()`` racing creating writes, updates, reads and
    file deletes, from threads and from processes: every call succeeds or raises
    ``SessionNotFoundError`` (the documented error of a missing session or file),
    never a raw ``FileNotFoundError`` or ``ENOTEMPTY``; afterwards the root holds only
    sessions, no tombstones or temp files.  Before the rewrite the raw errors came
    within a few dozen operations."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACE_SCRIPT, str(cfg.root), role, "150"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for role in ("delete", "p1", "p2")
    ]
    bad = []

    def worker(seed):
        rng = random.Random(seed)
        for index in range(150):
            manager = StateManager("s1", settings=cfg.replace(lock_timeout=60))
            try:
                _race_operation(manager, rng, index)
            except SessionNotFoundError:
                pass
            except BaseException as exc:
                bad.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads)
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        bad.extend(json.loads(out))
    assert bad == [], "\n".join(bad)
    if cfg.root.exists():
        assert set(os.listdir(cfg.root)) <= {"s1"}
    manager = StateManager("s1", settings=cfg)
    manager.write_json("z.json", {"z": 1})
    manager.delete()
    assert os.listdir(cfg.root) == []


KILLED_DELETE = r"""
import sys
from pytest_sessionstate import Settings, StateManager
manager = StateManager("s1", settings=Settings(sys.argv[1], durable=True))
sys.stdout.write("ready\n")
sys.stdout.flush()
manager.delete()
sys.stdout.write("deleted\n")
sys.stdout.flush()
"""


def test_a_sigkilled_whole_session_delete_leaves_all_of_it_or_none(cfg):
    """Case 13: a whole-session delete SIGKILLed at a random moment leaves the whole
    session (every file readable) or none of it (``exists()`` false, not listed); a
    write afterwards starts a fresh session, and the next delete sweeps what killed
    deletes left.  Before the rewrite files went one by one, and a kill left a half
    session."""
    rng = random.Random(13)
    names = [f"f{i:03d}.json" for i in range(300)]
    outcomes = {"whole": 0, "none": 0}
    for _ in range(8):
        manager = StateManager("s1", settings=cfg)
        for name in names:
            manager.write_json(name, {"name": name})
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_DELETE, str(cfg.root)], stdout=subprocess.PIPE
        )
        try:
            ready, _, _ = select.select([child.stdout], [], [], WAIT)
            assert ready
            assert child.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.0, 0.03))
            child.kill()
        finally:
            child.wait(WAIT)
            child.stdout.close()
        if manager.exists():
            assert list_sessions(settings=cfg) == ["s1"]
            assert manager.list_files() == names
            for name in names:
                assert manager.read_json(name) == {"name": name}
            outcomes["whole"] += 1
            manager.delete()  # the next round starts from nothing
        else:
            assert list_sessions(settings=cfg) == []
            assert manager.list_files() == []
            outcomes["none"] += 1
        fresh = StateManager("s1", settings=cfg)
        fresh.write_json("new.json", {})
        assert fresh.list_files() == ["new.json"]
        fresh.delete()
        assert os.listdir(cfg.root) == []  # tombstones of killed deletes were swept
    assert sum(outcomes.values()) == 8


KILLED_FIRST_WRITE = r"""
import os, signal, sys
from pytest_sessionstate import Settings, StateManager, probes

def die(event):
    if event.point == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)

probes.add_listener(die)
StateManager("s1", settings=Settings(sys.argv[1], durable=True)).write_json("a.json", {})
"""


@pytest.mark.parametrize("point", ["dir-created", "lock-acquired", "temp-written"])
def test_a_sigkilled_first_write_leaves_no_empty_session_listed(cfg, point):
    """Case 13: a first write SIGKILLed after it created the session's directory must
    not leave a session that ``list_sessions`` shows with nothing in it for ever."""
    done = subprocess.run(
        [sys.executable, "-c", KILLED_FIRST_WRITE, str(cfg.root), point],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    manager = StateManager("s1", settings=cfg)
    assert manager.list_files() == []
    assert list_sessions(settings=cfg) == []
    assert not manager.exists()


def test_errno_of_a_raw_error_is_never_enotempty_on_delete(cfg):
    """Case 13, the ENOTEMPTY half: a file planted in the session while its delete
    runs (here: by a probe listener, right after the rename) does not make the delete
    raise ``ENOTEMPTY``; the delete succeeds and the session is gone."""
    manager = StateManager("s1", settings=cfg)
    manager.write_json("a.json", {})
    planted = []

    def plant(event):
        if event.point == "removed" and event.filename is None and not planted:
            planted.append(True)
            StateManager("s1", settings=cfg).write_json("late.json", {})

    with probes.listen(plant):
        try:
            manager.delete()
        except OSError as exc:  # pragma: no cover - the failure this test is about
            assert exc.errno != errno.ENOTEMPTY  # noqa: PT017 - the errno is the point
            raise
    assert planted
    assert "late.json" in StateManager("s1", settings=cfg).list_files() or not manager.exists()
