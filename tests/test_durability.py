"""A durable write fsyncs the temp file before the rename and the directory after.

Shown twice: with the probe points the write passes, and with a real syscall
trace (strace) of a fresh interpreter doing the writes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from pytest_sessionstate import Settings, StateManager, probes
from pytest_sessionstate.probes import WRITE_POINTS


@pytest.fixture(params=[True, False], ids=["durable", "not-durable"])
def durable(request):
    return request.param


@pytest.fixture
def sm(tmp_path, durable):
    manager = StateManager("s1", settings=Settings(tmp_path / "root", durable=durable))
    manager.write_json("a.json", {"v": 0})
    return manager


def record(action):
    events = []
    with probes.listen(events.append):
        action()
    return events


def expected(points, durable):
    skipped = set() if durable else {"temp-synced", "dir-synced"}
    return [p for p in points if p not in skipped]


def test_write_points_in_order(sm, durable):
    events = record(lambda: sm.write_json("a.json", {"v": 1}))
    no_read = [p for p in WRITE_POINTS if p != "read"]
    assert [e.point for e in events] == expected(no_read, durable)
    assert all(e.durable is durable for e in events)

    events = record(lambda: sm.update_json("a.json", {"v": 2}))
    assert [e.point for e in events] == expected(WRITE_POINTS, durable)

    def in_transaction():
        with sm.transaction("a.json") as doc:
            doc["v"] = 3

    events = record(in_transaction)
    assert [e.point for e in events] == expected(WRITE_POINTS, durable)
    assert [e.point for e in record(lambda: sm.read_json("a.json"))] == ["read"]


def test_each_point_is_passed_after_its_step(sm, durable):
    target = sm.session_dir / "a.json"
    new = {"v": "new", "list": list(range(100))}
    checks = []
    written = []

    def check(event):
        if event.point == "temp-created":
            checks.append(("created", event.temp.exists(), event.temp.stat().st_size))
        elif event.point == "temp-written":
            written.append(event.data)
            checks.append(("written", event.temp.read_bytes() == event.data))
            checks.append(("old-still-there", sm.read_json("a.json") == {"v": 0}))
        elif event.point == "temp-synced":
            checks.append(("synced", event.temp.read_bytes() == written[0]))
        elif event.point == "replaced":
            checks.append(("replaced", not event.temp.exists(), target.read_bytes()))
        elif event.point == "dir-synced":
            checks.append(("dir-synced", event.path == target))

    with probes.listen(check):
        sm.write_json("a.json", new)
    data = target.read_bytes()
    assert checks[0] == ("created", True, 0)
    assert ("written", True) in checks
    assert ("old-still-there", True) in checks
    assert ("replaced", True, data) in checks
    assert (("synced", True) in checks) is durable
    assert (("dir-synced", True) in checks) is durable


def test_the_lock_waits_are_reported(sm):
    events = record(lambda: sm.write_json("a.json", {"v": 1}))
    acquired = [e for e in events if e.point == "lock-acquired"]
    assert len(acquired) == 1
    assert acquired[0].waited is not None
    assert acquired[0].waited >= 0


# -- a real syscall trace --------------------------------------------------------------------------

WRITER = """
import sys
from pytest_sessionstate import Settings, StateManager

root, durable = sys.argv[1], sys.argv[2] == "1"
manager = StateManager("s1", settings=Settings(root, durable=durable))
manager.write_json("a.json", {"v": 1})   # a new file
manager.write_json("a.json", {"v": 2})   # replacing one
manager.update_json("a.json", {"v": 3})
"""

CALL = re.compile(r"^(?:\[pid\s+)?\d*\]?\s*(\w+)\((.*)\)\s+=\s+(-?\d+)")


def trace(tmp_path, durable):
    root = tmp_path / "root"
    log = tmp_path / "strace.log"
    done = subprocess.run(
        [
            "strace",
            "-f",
            "-o",
            str(log),
            "-e",
            "trace=fsync,rename,renameat,renameat2,openat",
            sys.executable,
            "-c",
            WRITER,
            str(root),
            "1" if durable else "0",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    calls = []
    for line in log.read_text().splitlines():
        match = CALL.match(line.split(None, 1)[1] if line[:1].isdigit() else line)
        if match:
            calls.append((match.group(1), match.group(2), int(match.group(3))))
    return root / "s1", calls


def session_dir_fds(session_dir, calls):
    """Indexes and results of the opens of the session directory (never through a link)."""
    return {
        index: result
        for index, (name, args, result) in enumerate(calls)
        if name == "openat"
        and f'"{session_dir}"' in args
        and "O_DIRECTORY" in args
        and "O_NOFOLLOW" in args
    }


def write_sequences(session_dir, calls):
    """For each rename of a temp file onto a.json: the temp's name, (index of its creation,
    its descriptor), the index of the rename, and the directory descriptor it used."""
    sequences = []
    opened = {}
    dirs = set(session_dir_fds(session_dir, calls).values())
    for index, (name, args, result) in enumerate(calls):
        if name == "openat" and ".a.json." in args and "O_CREAT" in args and "O_EXCL" in args:
            opened[args.split('"')[1]] = (index, result)
        if name.startswith("rename") and args.endswith('"a.json"'):
            dir_fd = int(args.split(",")[0])
            assert dir_fd in dirs, f"renamed relative to {dir_fd}, not the session directory"
            temp = args.split('"')[1]
            sequences.append((temp, opened[temp], index, dir_fd))
    return sequences


def dir_fsync_after(dir_fd, calls, start):
    """Whether the session directory (``dir_fd``) is fsynced after ``start``."""
    for name, args, _ in calls[start + 1 :]:
        if name == "fsync" and int(args) == dir_fd:
            return True
        if name.startswith("rename"):
            return False  # the next write began before any directory fsync
    return False


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_shows_fsync_before_rename_and_directory_fsync_after(tmp_path):
    session_dir, calls = trace(tmp_path, durable=True)
    sequences = write_sequences(session_dir, calls)
    assert len(sequences) == 3, calls
    for temp, (opened_at, fd), renamed_at, dir_fd in sequences:
        between = calls[opened_at + 1 : renamed_at]
        assert ("fsync", str(fd), 0) in between, f"{temp} was renamed without an fsync"
        assert dir_fsync_after(dir_fd, calls, renamed_at), "no directory fsync"
        assert not os.path.exists(session_dir / temp)


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_shows_no_fsync_when_not_durable(tmp_path):
    session_dir, calls = trace(tmp_path, durable=False)
    sequences = write_sequences(session_dir, calls)
    assert len(sequences) == 3
    assert not [call for call in calls if call[0] == "fsync"]
