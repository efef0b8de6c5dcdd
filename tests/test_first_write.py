"""A first write appears whole: killed at any step, it leaves no session behind.

A write that creates a session makes its directory with a marker
(``.creating``) and removes the marker once its file is in place; until then
the directory is debris, not a session: ``exists()`` is false and
``list_sessions`` does not show it.  A session made on purpose by ``lock()``
is a session from the start, empty or not.  Before this, a first write
SIGKILLed after ``mkdir`` left an empty session listed for ever (case 13 of
the issue "The core under attack").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from pytest_sessionstate import AsyncStateManager, Settings, StateManager, list_sessions
from pytest_sessionstate.fsops import LOCK_NAME, UNBORN_NAME
from pytest_sessionstate.rootcheck import check_root
from pytest_sessionstate.rootrepair import repair_root

KILLED_FIRST_WRITE = r"""
import os, signal, sys
from pytest_sessionstate import Settings, StateManager, probes

def die(event):
    if event.point == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)

probes.add_listener(die)
manager = StateManager("s1", settings=Settings(sys.argv[1], durable=sys.argv[3] == "1"))
if sys.argv[4] == "transaction":
    with manager.transaction("a.json", default={"v": 0}) as doc:
        doc["v"] = 1
else:
    manager.write_json("a.json", {"v": 1})
"""

BEFORE_THE_FILE = ["dir-created", "lock-acquired", "temp-created", "temp-written"]
AFTER_THE_FILE = ["replaced", "lock-released"]


def cfg_for(tmp_path, durable: bool) -> Settings:
    return Settings(tmp_path / "root", lock_timeout=5, durable=durable)


def kill_first_write(cfg: Settings, point: str, how: str = "write_json") -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLED_FIRST_WRITE,
            str(cfg.root),
            point,
            "1" if cfg.durable else "0",
            how,
        ],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr


def assert_no_session(cfg: Settings) -> None:
    manager = StateManager("s1", settings=cfg)
    assert not manager.exists()
    assert list_sessions(settings=cfg) == []
    assert manager.list_files() == []


@pytest.mark.parametrize("how", ["write_json", "transaction"])
@pytest.mark.parametrize(
    ("point", "durable"),
    [(point, False) for point in BEFORE_THE_FILE]
    + [(point, True) for point in [*BEFORE_THE_FILE, "temp-synced"]],  # durable only
)
def test_a_first_write_killed_before_its_file_is_in_place_leaves_no_session(
    tmp_path, point, durable, how
):
    cfg = cfg_for(tmp_path, durable)
    kill_first_write(cfg, point, how)
    assert (cfg.root / "s1").is_dir()  # the debris is there, but it is no session
    assert_no_session(cfg)


@pytest.mark.parametrize("durable", [False, True], ids=["fast", "durable"])
@pytest.mark.parametrize("point", AFTER_THE_FILE)
def test_a_first_write_killed_after_its_rename_made_the_session(tmp_path, point, durable):
    cfg = cfg_for(tmp_path, durable)
    kill_first_write(cfg, point)
    manager = StateManager("s1", settings=cfg)
    assert manager.exists()
    assert list_sessions(settings=cfg) == ["s1"]
    assert manager.read_json("a.json") == {"v": 1}


@pytest.mark.parametrize("point", BEFORE_THE_FILE)
def test_the_next_write_makes_the_debris_a_session_and_drops_the_marker(tmp_path, point):
    cfg = cfg_for(tmp_path, durable=False)
    kill_first_write(cfg, point)
    manager = StateManager("s1", settings=cfg)
    manager.write_json("b.json", {"ok": True})
    assert manager.exists()
    assert list_sessions(settings=cfg) == ["s1"]
    assert manager.list_files() == ["b.json"]
    names = os.listdir(manager.session_dir)
    assert UNBORN_NAME not in names
    assert sorted(names) == [LOCK_NAME, "b.json"]  # the killed write's temp file is gone too
    manager.delete("b.json")  # emptied on purpose, it stays a session
    assert manager.exists()
    assert list_sessions(settings=cfg) == ["s1"]


def test_lock_makes_the_debris_a_session(tmp_path):
    cfg = cfg_for(tmp_path, durable=False)
    kill_first_write(cfg, "lock-acquired")
    manager = StateManager("s1", settings=cfg)
    with manager.lock():
        assert manager.exists()
    assert manager.exists()
    assert list_sessions(settings=cfg) == ["s1"]
    assert UNBORN_NAME not in os.listdir(manager.session_dir)


def test_a_session_made_by_lock_is_a_session_though_empty(tmp_path):
    cfg = cfg_for(tmp_path, durable=True)
    manager = StateManager("s1", settings=cfg)
    with manager.lock():
        pass
    assert manager.exists()
    assert list_sessions(settings=cfg) == ["s1"]
    assert os.listdir(manager.session_dir) == [LOCK_NAME]


def test_a_completed_first_write_leaves_no_marker(tmp_path):
    for durable in (False, True):
        cfg = cfg_for(tmp_path / str(durable), durable)
        manager = StateManager("s1", settings=cfg)
        manager.write_json("a.json", {})
        assert sorted(os.listdir(manager.session_dir)) == [LOCK_NAME, "a.json"]
        with manager.transaction("b.json", default={}):
            pass
        assert sorted(os.listdir(manager.session_dir)) == [LOCK_NAME, "a.json", "b.json"]


def test_inside_the_first_write_the_session_is_not_there_yet(tmp_path):
    """Another reader sees the first write whole or not at all, never an empty session."""
    cfg = cfg_for(tmp_path, durable=False)
    manager = StateManager("s1", settings=cfg)
    seen = []
    with manager.transaction("a.json", default={}) as doc:
        doc["v"] = 1
        seen.append((list_sessions(settings=cfg), StateManager("s1", settings=cfg).exists()))
    assert seen == [([], False)]
    assert list_sessions(settings=cfg) == ["s1"]


def test_a_failed_first_write_removes_its_directory_and_marker(tmp_path):
    cfg = cfg_for(tmp_path, durable=False)
    manager = StateManager("s1", settings=cfg)
    with pytest.raises(KeyError), manager.transaction("a.json", default={}):
        raise KeyError("inside")
    assert os.listdir(cfg.root) == []


@pytest.mark.parametrize(
    "leftover",
    [
        [],
        [UNBORN_NAME],
        [UNBORN_NAME, LOCK_NAME],
        [UNBORN_NAME, LOCK_NAME, ".a.json.0123456789abcdef.tmp"],
    ],
    ids=["mkdir-only", "marker", "marker-and-lock", "marker-lock-temp"],
)
def test_every_shape_of_debris_is_no_session_and_repair_removes_it(tmp_path, leftover):
    cfg = cfg_for(tmp_path, durable=False)
    session_dir = cfg.root / "s1"
    session_dir.mkdir(parents=True, mode=0o700)
    for name in leftover:
        (session_dir / name).write_bytes(b"")
    assert_no_session(cfg)
    report = check_root(cfg.root)
    assert [f.kind for f in report.findings if f.session_id == "s1"].count("empty-session") == 1
    (session,) = [s for s in report.sessions if s.session_id == "s1"]
    assert session.to_json()["unborn"] is (UNBORN_NAME in leftover)
    repair_root(cfg.root)
    assert os.listdir(cfg.root) == []


def test_a_document_makes_a_session_whatever_else_is_there(tmp_path):
    """A session of the original code (no lock file) or with a stale marker is a
    session as soon as it holds a document."""
    cfg = cfg_for(tmp_path, durable=False)
    session_dir = cfg.root / "s1"
    session_dir.mkdir(parents=True, mode=0o700)
    (session_dir / "a.json").write_text("{}")
    assert StateManager("s1", settings=cfg).exists()
    (session_dir / UNBORN_NAME).write_bytes(b"")
    assert StateManager("s1", settings=cfg).exists()
    assert list_sessions(settings=cfg) == ["s1"]


def test_the_async_manager_sees_the_same(tmp_path):
    import asyncio

    cfg = cfg_for(tmp_path, durable=False)
    kill_first_write(cfg, "temp-written")

    async def main() -> tuple[bool, bool]:
        manager = AsyncStateManager("s1", settings=cfg)
        before = await manager.exists()
        await manager.write_json("a.json", {})
        return before, await manager.exists()

    assert asyncio.run(main()) == (False, True)


def first_write(manager: StateManager, how: str) -> None:
    if how == "transaction":
        with manager.transaction("a.json", default={"v": 1}):
            pass
    else:
        manager.write_json("a.json", {"v": 1})


@pytest.mark.parametrize("how", ["write_json", "transaction"])
@pytest.mark.parametrize("durable", [False, True], ids=["fast", "durable"])
def test_a_first_write_failing_at_any_point_leaves_nothing_or_the_whole_session(
    tmp_path, durable, how
):
    """An OSError injected at each point of a first write: before the file is in
    place nothing is left (not even the directory); from ``replaced`` on, the
    session is there with its document and without the marker."""
    from pytest_sessionstate.testing.crash import CrashInjector

    cfg = cfg_for(tmp_path, durable)
    injector = CrashInjector(cfg)
    points = ["dir-created", "lock-acquired", "temp-created", "temp-written"]
    points += ["temp-synced"] if durable else []
    after = ["replaced", "dir-synced"] if durable else ["replaced"]
    for point in points + after:
        session_id = "s-" + point
        manager = StateManager(session_id, settings=cfg)
        with injector.fail_at(point) as fault, pytest.raises(OSError):
            first_write(manager, how)
        assert fault.fired
        if point in after:
            assert manager.read_json("a.json") == {"v": 1}
            assert sorted(os.listdir(manager.session_dir)) == [LOCK_NAME, "a.json"]
        else:
            assert not manager.session_dir.exists(), point
    assert list_sessions(settings=cfg) == sorted("s-" + point for point in after)


def test_a_directory_squatting_on_the_markers_name_blocks_nothing(tmp_path):
    """Like a squatter on a temp name (case 12): a directory named ``.creating``
    never fails a write and never hides a session."""
    cfg = cfg_for(tmp_path, durable=False)
    manager = StateManager("s1", settings=cfg)
    with manager.lock():
        pass  # a session, empty
    (manager.session_dir / UNBORN_NAME).mkdir()
    assert manager.exists()
    assert list_sessions(settings=cfg) == ["s1"]
    manager.write_json("a.json", {"v": 1})
    assert manager.read_json("a.json") == {"v": 1}
    assert (manager.session_dir / UNBORN_NAME).is_dir()


def test_marking_a_directory_marked_already_is_fine(tmp_path):
    """A first write whose new directory was deleted and made again by another first
    write, between its mkdir and its open, finds the marker there: not an error
    (the race test of whole-session deletes and creating writes met this as a raw
    FileExistsError, one run in four)."""
    from pytest_sessionstate import fsops

    directory = tmp_path / "s1"
    directory.mkdir()
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fsops.mark_unborn(fd, durable=True)
        fsops.mark_unborn(fd, durable=True)
        assert os.listdir(fd) == [UNBORN_NAME]
    finally:
        os.close(fd)
