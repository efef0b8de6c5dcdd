"""``sessionstate check`` and ``repair`` on real roots with planted problems.

Every command runs as a real subprocess: the installed console script (next to
this interpreter) or ``python -m pytest_sessionstate``.  Locks are held by real
other processes (the toolkit's ``hold_lock``, or a bare ``flock``), and each of
their pids must be shown.  Every subprocess is bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_sessionstate import Settings, StateManager, probes
from pytest_sessionstate.proclocks import file_key, read_locks
from pytest_sessionstate.rootrepair import repair_root

TIMEOUT = 60  # bound on every subprocess
SCRIPT = shutil.which("sessionstate", path=str(Path(sys.executable).parent))
TEMP = ".session.json.0123456789abcdef.tmp"
HAS_PROC_LOCKS = read_locks() is not None
needs_proc_locks = pytest.mark.skipif(not HAS_PROC_LOCKS, reason="no /proc/locks here")


def sessionstate(*args, root=None, module=False, env=None):
    """Run the command line; its CompletedProcess (text)."""
    assert SCRIPT is not None, "the sessionstate console script is not installed"
    argv = [sys.executable, "-m", "pytest_sessionstate"] if module else [SCRIPT]
    if root is not None:
        argv += ["--root", str(root)]
    argv += [str(arg) for arg in args]
    environment = {k: v for k, v in os.environ.items() if k != "SESSIONSTATE_ROOT"}
    environment.update(env or {})
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, env=environment, check=False
    )


def check_json(root):
    done = sessionstate("check", "--json", root=root)
    assert done.stderr == ""
    return done.returncode, json.loads(done.stdout)


def human_findings(lines):
    """``{(kind, path)}`` from the lines of check's human output."""
    found = set()
    for line in lines:
        kind, rest = line.split(None, 1)
        found.add((kind, rest.split(": ", 1)[0]))
    return found


def findings_of(report):
    return {(finding["kind"], finding["path"]) for finding in report["findings"]}


@pytest.fixture
def settings(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    return Settings(root, durable=False)


@pytest.fixture
def root(settings):
    return settings.root


def write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)


def plant(settings):
    """A root with one of each problem; returns the expected (kind, path) findings."""
    root = settings.root
    StateManager("good", settings=settings).write_json("session.json", {"a": {"b": 1}})
    bad = StateManager("bad", settings=settings)
    bad.write_json("session.json", {"ok": True})
    write(bad.session_dir / "broken.json", '{"a": 1,')
    write(bad.session_dir / "list.json", "[1, 2]")
    write(bad.session_dir / "nan.json", '{"a": NaN}')
    write(bad.session_dir / "huge.json", '{"a": 1e400}')
    write(bad.session_dir / "latin1.json", "")
    (bad.session_dir / "latin1.json").write_bytes(b'{"caf\xe9": 1}')
    write(bad.session_dir / TEMP, '{"half": ')
    os.mkfifo(bad.session_dir / "pipe.json", 0o600)
    os.symlink("/etc/passwd", bad.session_dir / "link.json")
    write(bad.session_dir / "open.json", "{}", mode=0o644)
    (bad.session_dir / "dir.json").mkdir(mode=0o700)
    write(bad.session_dir / "notes.txt~", "x")
    empty = StateManager("empty", settings=settings)
    empty.write_json("gone.json", {})
    empty.delete("gone.json")  # leaves the session with its lock file only
    os.mkfifo(root / "fifo-session", 0o600)
    os.symlink("/etc", root / "evil")
    return {
        ("corrupt", "bad/broken.json"),
        ("corrupt", "bad/list.json"),
        ("corrupt", "bad/nan.json"),
        ("corrupt", "bad/huge.json"),
        ("corrupt", "bad/latin1.json"),
        ("orphaned-temp", f"bad/{TEMP}"),
        ("not-regular", "bad/pipe.json"),
        ("not-regular", "bad/dir.json"),
        ("symlink", "bad/link.json"),
        ("mode", "bad/open.json"),
        ("stray", "bad/notes.txt~"),
        ("empty-session", "empty"),
        ("not-a-directory", "fifo-session"),
        ("symlink", "evil"),
    }


def snapshot(root):
    """Every entry under the root (never following a symlink), with what may change."""
    entries = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            content = None
            if stat.S_ISREG(info.st_mode):
                content = Path(path).read_bytes()
            entries[os.path.relpath(path, root)] = (
                info.st_mode,
                info.st_ino,
                info.st_uid,
                info.st_mtime_ns,
                content,
            )
    return entries


# -- check ------------------------------------------------------------------------


@pytest.mark.parametrize("module", [False, True], ids=["script", "python-m"])
def test_a_clean_root_exits_0(settings, module):
    manager = StateManager("order-42", settings=settings)
    manager.write_json("session.json", {"step": 1})
    manager.write_json("profile.json", {"name": "Ada"})
    done = sessionstate("check", root=settings.root, module=module)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[-1].startswith("clean: ")
    assert "1 session, 2 documents" in done.stdout


def test_an_empty_root_is_clean(root):
    rc, report = check_json(root)
    assert rc == 0
    assert report["clean"] is True
    assert report["findings"] == []
    assert report["counts"] == {"sessions": 0, "documents": 0, "findings": 0}


@pytest.mark.parametrize("module", [False, True], ids=["script", "python-m"])
def test_every_planted_problem_is_reported_and_the_exit_status_is_1(settings, module):
    expected = plant(settings)
    done = sessionstate("check", root=settings.root, module=module)
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert human_findings(lines[:-1]) == expected
    assert lines[-1].startswith(f"{len(expected)} problems in ")
    # Nothing below the symlinked session was looked at.
    assert not any("evil/" in line for line in lines)


def test_the_json_report_lists_exactly_the_planted_problems(settings):
    expected = plant(settings)
    rc, report = check_json(settings.root)
    assert rc == 1
    assert findings_of(report) == expected
    assert report["clean"] is False
    assert report["version"] == 1
    assert report["root"] == str(settings.root)
    assert report["counts"]["findings"] == len(expected)
    by_path = {finding["path"]: finding for finding in report["findings"]}
    assert "not an object" in by_path["bad/list.json"]["message"]
    assert "NaN" in by_path["bad/nan.json"]["message"]
    assert "infinity" in by_path["bad/huge.json"]["message"]
    assert "utf-8" in by_path["bad/latin1.json"]["message"].lower()
    assert by_path["bad/open.json"]["details"]["mode"] == "0644"
    assert by_path["bad/pipe.json"]["details"]["type"] == "FIFO"
    assert by_path["bad/link.json"]["details"]["target"] == "/etc/passwd"
    assert by_path["bad/broken.json"]["session_id"] == "bad"
    assert by_path["evil"]["session_id"] is None
    sessions = {session["session_id"]: session for session in report["sessions"]}
    assert set(sessions) == {"bad", "empty", "good"}
    assert sessions["empty"]["empty"] is True
    assert sessions["good"]["documents"] == ["session.json"]
    assert set(sessions["bad"]["documents"]) >= {"broken.json", "open.json", "session.json"}


def test_check_changes_nothing_and_creates_nothing(settings):
    plant(settings)
    bare = settings.root / "bare"  # a session without a lock file: check must not make one
    bare.mkdir(mode=0o700)
    write(bare / "doc.json", "{}")
    before = snapshot(settings.root)
    for args in (["check"], ["check", "--json"]):
        assert sessionstate(*args, root=settings.root).returncode == 1
    assert snapshot(settings.root) == before
    assert not (bare / ".lock").exists()


def test_check_never_blocks_on_fifos_wherever_they_are(settings):
    manager = StateManager("s", settings=settings)
    manager.write_json("session.json", {})
    os.mkfifo(manager.session_dir / "doc.json", 0o600)
    os.mkfifo(manager.session_dir / ".other.json.0123456789abcdef.tmp", 0o600)
    fifo_lock = settings.root / "t"
    fifo_lock.mkdir(mode=0o700)
    os.mkfifo(fifo_lock / ".lock", 0o600)
    write(fifo_lock / "doc.json", "{}")
    rc, report = check_json(settings.root)  # bounded by TIMEOUT: a hang fails the test
    assert rc == 1
    assert findings_of(report) == {
        ("not-regular", "s/doc.json"),
        ("not-regular", "s/.other.json.0123456789abcdef.tmp"),
        ("not-regular", "t/.lock"),
    }


def test_a_root_or_session_that_others_may_write_is_reported(settings):
    manager = StateManager("s", settings=settings)
    manager.write_json("session.json", {})
    os.chmod(settings.root, 0o777)
    os.chmod(manager.session_dir, 0o755)
    os.chmod(manager.lock_file, 0o644)
    rc, report = check_json(settings.root)
    assert rc == 1
    assert findings_of(report) == {("mode", "."), ("mode", "s"), ("mode", "s/.lock")}
    assert report["findings"][0]["path"] == "."  # the root comes first


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_an_entry_owned_by_another_user_is_reported(settings):
    manager = StateManager("s", settings=settings)
    manager.write_json("session.json", {})
    os.chown(manager.session_dir / "session.json", 4321, 4321)
    rc, report = check_json(settings.root)
    assert rc == 1
    assert findings_of(report) == {("owner", "s/session.json")}
    assert report["findings"][0]["details"] == {"uid": 4321, "expected_uid": os.geteuid()}


def test_names_are_never_printed_raw_to_the_terminal(root):
    write(root / "\x1b[2Jevil", "x")
    os.mkdir(root / os.fsdecode(b"caf\xe9"), 0o700)
    done = sessionstate("check", root=root)
    assert done.returncode == 1
    assert "\x1b" not in done.stdout
    assert "\\x1b[2Jevil" in done.stdout
    rc, report = check_json(root)
    assert rc == 1
    assert {finding["kind"] for finding in report["findings"]} == {"stray"}


def test_a_missing_root_is_bad_usage_and_is_not_created(tmp_path):
    missing = tmp_path / "nope"
    done = sessionstate("check", root=missing)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "does not exist" in done.stderr
    assert not missing.exists()


# -- locks --------------------------------------------------------------------------


@needs_proc_locks
@pytest.mark.parametrize("module", [False, True], ids=["script", "python-m"])
def test_a_lock_held_by_another_process_is_shown_with_its_pid(settings, contention, module):
    manager = StateManager("busy", settings=settings)
    manager.write_json("session.json", {"n": 1})
    with contention.hold_lock(manager) as holder:
        done = sessionstate("check", root=settings.root, module=module)
        rc, report = check_json(settings.root)
    assert done.returncode == 0, done.stdout  # a held lock is normal operation
    assert f"busy: held by pid {holder.pid}" in done.stdout
    assert rc == 0
    assert report["findings"] == []
    assert report["locks_visible"] is True
    [lock] = report["locks"]
    assert lock["pid"] == holder.pid
    assert lock["session_id"] == "busy"
    assert (lock["kind"], lock["access"], lock["waiting"]) == ("FLOCK", "WRITE", False)
    assert report["sessions"][0]["locked"] is True
    # Once released, nothing is held.
    assert check_json(settings.root)[1]["locks"] == []


WAITER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
print("open", flush=True)
fcntl.flock(fd, fcntl.LOCK_EX)
"""


@needs_proc_locks
def test_a_process_waiting_for_the_lock_is_shown_too(settings, contention):
    manager = StateManager("busy", settings=settings)
    manager.write_json("session.json", {})
    key = file_key(os.stat(manager.lock_file))
    with contention.hold_lock(manager) as holder:
        waiter = subprocess.Popen(
            [sys.executable, "-c", WAITER, str(manager.lock_file)], stdout=subprocess.PIPE
        )
        try:
            assert waiter.stdout.readline() == b"open\n"
            deadline = time.monotonic() + TIMEOUT
            while not any(e.waiting for e in (read_locks() or {}).get(key, [])):
                assert time.monotonic() < deadline, "the waiter never queued"
                time.sleep(0.01)
            done = sessionstate("check", root=settings.root)
        finally:
            waiter.kill()
            waiter.wait(TIMEOUT)
            waiter.stdout.close()
    assert done.returncode == 0
    assert f"busy: held by pid {holder.pid}" in done.stdout
    assert f"busy: pid {waiter.pid} (python" in done.stdout
    assert "waits for the lock" in done.stdout


@needs_proc_locks
def test_a_temp_file_under_a_held_lock_is_a_write_in_progress(settings, contention):
    manager = StateManager("s", settings=settings)
    manager.write_json("session.json", {})
    write(manager.session_dir / TEMP, "{")
    with contention.hold_lock(manager):
        rc, report = check_json(settings.root)
        assert (rc, report["findings"]) == (0, [])
    rc, report = check_json(settings.root)
    assert rc == 1
    assert findings_of(report) == {("orphaned-temp", f"s/{TEMP}")}


@needs_proc_locks
def test_an_empty_session_in_use_is_not_a_finding(settings, contention):
    manager = StateManager("new", settings=settings)
    manager.write_json("a.json", {})
    manager.delete("a.json")  # an empty session, as a killed first write leaves one
    with contention.hold_lock(manager):
        assert check_json(settings.root)[0] == 0  # in use: the holder may be writing it
    rc, report = check_json(settings.root)
    assert rc == 1
    assert findings_of(report) == {("empty-session", "new")}


# -- repair -------------------------------------------------------------------------


def documents_of(root):
    """Every entry but the orphans and the empty session, as :func:`snapshot` has it
    (directories without their mtime: removing an orphan changes it)."""
    return {
        path: entry[:3] + entry[4:] if stat.S_ISDIR(entry[0]) else entry
        for path, entry in snapshot(root).items()
        if not path.endswith(".tmp") and not path.startswith("empty")
    }


@pytest.mark.parametrize("module", [False, True], ids=["script", "python-m"])
def test_repair_removes_orphans_and_empty_sessions_and_nothing_else(settings, module):
    plant(settings)
    kept = documents_of(settings.root)
    done = sessionstate("repair", root=settings.root, module=module)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""
    assert f"removed orphaned temp bad/{TEMP}" in done.stdout
    assert "removed empty session empty" in done.stdout
    assert "other problems need a person" in done.stdout
    assert documents_of(settings.root) == kept  # every document, corrupt or not, untouched
    assert not (settings.root / "empty").exists()
    assert not (settings.root / "bad" / TEMP).exists()
    rc, report = check_json(settings.root)
    assert rc == 1  # the corrupt documents are still there, for a person
    assert not {kind for kind, _ in findings_of(report)} & {"orphaned-temp", "empty-session"}
    # Run again: nothing left to do.
    again = sessionstate("repair", root=settings.root)
    assert again.returncode == 0
    assert "nothing to repair" in again.stdout


def test_repair_dry_run_says_what_it_would_do_and_changes_nothing(settings):
    plant(settings)
    before = snapshot(settings.root)
    done = sessionstate("repair", "--dry-run", root=settings.root)
    assert done.returncode == 1
    assert f"would remove orphaned temp bad/{TEMP}" in done.stdout
    assert "would remove empty session empty" in done.stdout
    assert snapshot(settings.root) == before


def test_repair_of_a_clean_root_does_nothing(settings):
    StateManager("s", settings=settings).write_json("a.json", {})
    before = snapshot(settings.root)
    for args in (["repair"], ["repair", "--dry-run"]):
        done = sessionstate(*args, root=settings.root)
        assert done.returncode == 0
        assert "nothing to repair" in done.stdout
    assert snapshot(settings.root) == before


def test_repair_keeps_an_empty_session_that_holds_something_else(settings):
    manager = StateManager("odd", settings=settings)
    manager.write_json("gone.json", {})
    manager.delete("gone.json")
    os.mkfifo(manager.session_dir / "pipe", 0o600)
    done = sessionstate("repair", root=settings.root)
    assert done.returncode == 0
    assert "nothing to repair" in done.stdout
    assert (manager.session_dir / "pipe").exists()


def _on_lock_acquired(session_dir, action):
    """A probe listener that runs ``action`` once, when the lock of ``session_dir`` is taken."""
    fired = []

    def listener(event):
        if event.point == "lock-acquired" and Path(event.session_dir) == session_dir and not fired:
            fired.append(True)
            action()

    return listener, fired


@needs_proc_locks
def test_repair_skips_a_session_that_is_in_use_and_names_its_holder(settings, contention):
    first = StateManager("a-first", settings=settings)
    first.write_json("session.json", {})
    write(first.session_dir / TEMP, "{")
    second = StateManager("b-second", settings=settings)
    second.write_json("session.json", {})
    write(second.session_dir / TEMP, "{")
    holding = []

    def take_the_second_lock():
        # Between repair's survey and its turn at the second session, another process
        # takes that session's lock: repair must skip it, not wait, not remove.
        context = contention.hold_lock(second)
        holding.append((context, context.__enter__()))

    listener, fired = _on_lock_acquired(first.session_dir, take_the_second_lock)
    messages = []
    try:
        with probes.listen(listener):
            report = repair_root(settings.root, on_action=lambda a: messages.append(a.message))
    finally:
        for context, _ in holding:
            context.__exit__(None, None, None)
    assert fired
    [(_, holder)] = holding
    assert messages[0] == f"removed orphaned temp a-first/{TEMP}"
    assert messages[1].startswith("skipped session b-second: in use")
    assert f"pid {holder.pid}" in messages[1]
    assert [action.kind for action in report.pending] == ["skip"]
    assert (second.session_dir / TEMP).exists()


WRITER = """
import sys
from pytest_sessionstate import Settings, StateManager
manager = StateManager("e", settings=Settings(sys.argv[1], lock_timeout=60))
manager.write_json("doc.json", {"written": True})
"""


@needs_proc_locks
def test_removing_an_empty_session_never_loses_a_concurrent_write(settings):
    # The writer queues on the lock while repair holds it and removes the session;
    # once let in, it must notice and write into a fresh session, not a removed one.
    empty = StateManager("e", settings=settings)
    empty.write_json("gone.json", {})
    empty.delete("gone.json")
    key = file_key(os.stat(empty.lock_file))
    writers = []

    def start_a_writer():
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(settings.root)])
        writers.append(writer)
        deadline = time.monotonic() + TIMEOUT
        while not any(e.waiting for e in (read_locks() or {}).get(key, [])):
            assert writer.poll() is None, "the writer ended without waiting"
            assert time.monotonic() < deadline, "the writer never queued on the lock"
            time.sleep(0.01)

    listener, fired = _on_lock_acquired(empty.session_dir, start_a_writer)
    try:
        with probes.listen(listener):
            report = repair_root(settings.root)
        [writer] = writers
        assert writer.wait(TIMEOUT) == 0
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.send_signal(signal.SIGKILL)
                writer.wait(TIMEOUT)
    assert fired
    assert [action.kind for action in report.actions] == ["remove-session"]
    assert StateManager("e", settings=settings).read_json("doc.json") == {"written": True}


def test_repair_of_a_missing_root_is_bad_usage(tmp_path):
    done = sessionstate("repair", root=tmp_path / "nope")
    assert done.returncode == 2
    assert "does not exist" in done.stderr
    assert not (tmp_path / "nope").exists()
