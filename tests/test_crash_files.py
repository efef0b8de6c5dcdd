"""crash.explore_files: system-call-level crash tests, proven on code nobody here wrote.

Every test runs the real mechanism (a forked child under a seccomp filter, real
SIGKILLs, real files); they skip only where the platform cannot intercept.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from pytest_sessionstate import Settings, StateManager
from pytest_sessionstate.testing import filecrash
from pytest_sessionstate.testing.crash import CrashInjector, CrashReport

pytestmark = pytest.mark.skipif(
    not filecrash.files_supported(), reason=f"{filecrash.unsupported_reason()}"
)

tinydb = pytest.importorskip("tinydb")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def ack(value: object) -> None:
    CrashInjector.acknowledge(value)


# -- in-place JSON ------------------------------------------------------------------


def _rewrite_in_place(path: Path) -> None:
    with open(path, "w") as f:
        json.dump({"version": 2, "items": list(range(20))}, f)


def _json_parses(state: filecrash.FileState) -> None:
    json.loads((state.path / "config.json").read_text())


def test_in_place_json_kill_finds_empty_file(crash: CrashInjector, data_dir: Path) -> None:
    (data_dir / "config.json").write_text(json.dumps({"version": 1}))
    report = crash.explore_files(
        _rewrite_in_place, data_dir, args=(data_dir / "config.json",), check=_json_parses
    )
    assert [(c.k, c.operation, c.path) for c in report.crashes] == [
        (1, "open", "config.json"),
        (2, "write", "config.json"),
    ]
    assert report.runs == 3
    assert report.hits == 2
    assert report.complete
    assert not report.ok
    (violation,) = report.violations
    assert violation.run == 2
    assert violation.crash == report.crashes[1]
    text = violation.description
    assert "open 'config.json' (create, truncate)" in text
    assert "crashed here" in text
    assert "config.json (0 bytes)" in text
    assert "JSONDecodeError" in text
    with pytest.raises(AssertionError, match="JSONDecodeError"):
        report.assert_ok()
    # The directory is restored after the exploration.
    assert json.loads((data_dir / "config.json").read_text()) == {"version": 1}


def test_without_check_lists_crash_points_and_is_deterministic(
    crash: CrashInjector, data_dir: Path
) -> None:
    (data_dir / "config.json").write_text("{}")
    first = crash.explore_files(_rewrite_in_place, data_dir, args=(data_dir / "config.json",))
    second = crash.explore_files(_rewrite_in_place, data_dir, args=(data_dir / "config.json",))
    assert isinstance(first, CrashReport)
    assert first.ok
    assert first.runs == 3
    assert first == second


def test_error_mode_fails_the_operation_and_lets_the_target_go_on(
    crash: CrashInjector, data_dir: Path
) -> None:
    seen: list[tuple[str, tuple[object, ...]]] = []

    def target() -> None:
        path = data_dir / "log.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for line in (b"one\n", b"two\n"):
                try:
                    os.write(fd, line)
                except OSError as exc:
                    assert exc.errno == 5  # noqa: PT017 - in the target: EIO, and it goes on
                    os.write(fd, b"retried\n")
        finally:
            os.close(fd)
        ack("done")

    def check(state: filecrash.FileState) -> None:
        seen.append((state.label, state.acknowledged))

    report = crash.explore_files(target, data_dir, mode="error", check=check)
    # Run 1: the open fails (the target raises: a consequence, not its own error).
    # Runs 2 and 3: a write fails and the target writes "retried" instead (3 ops).
    assert [(c.k, c.operation) for c in report.crashes] == [(1, "open"), (2, "write"), (3, "write")]
    assert report.hits == 3
    assert report.runs == 4
    assert report.ok
    assert [label for label, _ in seen[:3]] == [
        "after the injected OSError(EIO); the target ran on to its end"
    ] * 3
    assert [acked for _, acked in seen] == [(), ("done",), ("done",), ("done",)]
    assert seen[-1][0] == "after the run completed"


# -- TinyDB (rewrites its JSON file in place: write, fsync, truncate) ------------------


def _tinydb_opens(state: filecrash.FileState) -> None:
    with tinydb.TinyDB(state.path / "db.json") as db:
        db.all()


def test_tinydb_remove_kill_finds_the_shrink_before_truncate(
    crash: CrashInjector, data_dir: Path
) -> None:
    with tinydb.TinyDB(data_dir / "db.json") as db:
        db.insert_multiple({"k": i, "pad": "x" * 40} for i in range(5))

    def remove() -> None:
        with tinydb.TinyDB(data_dir / "db.json") as db:
            db.remove(doc_ids=[1, 2])

    report = crash.explore_files(remove, data_dir, check=_tinydb_opens)
    assert [c.operation for c in report.crashes] == ["write", "fsync", "ftruncate"]
    assert [v.run for v in report.violations] == [2, 3]  # shrunk data written, not truncated
    assert "Extra data" in report.violations[0].description


def _tinydb_inserts(path: Path) -> None:
    with tinydb.TinyDB(path) as db:
        for i in range(3):
            db.insert({"k": i})
            ack(i)


def _acknowledged_inserts_present(state: filecrash.FileState) -> None:
    path = state.path / "db.json"
    docs: list[object] = []
    if path.exists():
        with tinydb.TinyDB(path) as db:
            docs = [doc["k"] for doc in db.all()]
    for value in state.acknowledged:
        assert value in docs, f"acknowledged insert {value} lost; the database holds {docs}"


def test_tinydb_inserts_survive_kill(crash: CrashInjector, data_dir: Path) -> None:
    report = crash.explore_files(
        _tinydb_inserts, data_dir, args=(data_dir / "db.json",), check=_acknowledged_inserts_present
    )
    report.assert_ok()
    assert report.hits == 10  # create, then write + fsync + truncate per insert


def test_tinydb_inserts_power_loss_loses_acknowledged_inserts(
    crash: CrashInjector, data_dir: Path
) -> None:
    report = crash.explore_files(
        _tinydb_inserts,
        data_dir,
        args=(data_dir / "db.json",),
        mode="power-loss",
        check=_acknowledged_inserts_present,
    )
    assert not report.ok
    # The file's creation is never made durable: the directory is not fsynced.
    assert any(
        "open 'db.json' (create, append) undone" in v.state
        or "every un-fsynced operation lost" in v.state
        for v in report.violations
    )
    assert any("acknowledged insert 0 lost" in v.description for v in report.violations)


# -- sqlite3 (C code: pwrite64, fdatasync, unlink of the journal) ----------------------


def _sqlite_commits(path: Path, synchronous: str | None) -> None:
    con = sqlite3.connect(path)
    try:
        if synchronous is not None:
            con.execute(f"PRAGMA synchronous={synchronous}")
        for i in range(2):
            with con:
                con.execute("INSERT INTO t VALUES (?)", (i,))
            ack(i)
    finally:
        con.close()


def _sqlite_consistent(state: filecrash.FileState) -> None:
    con = sqlite3.connect(state.path / "t.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = [x for (x,) in con.execute("SELECT x FROM t")]
    finally:
        con.close()
    for value in state.acknowledged:
        assert value in rows, f"acknowledged commit {value} lost; the table holds {rows}"


@pytest.fixture
def sqlite_db(data_dir: Path) -> Path:
    path = data_dir / "t.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    return path


def test_sqlite_defaults_survive_kill(crash: CrashInjector, sqlite_db: Path) -> None:
    report = crash.explore_files(
        _sqlite_commits, sqlite_db.parent, args=(sqlite_db, None), check=_sqlite_consistent
    )
    report.assert_ok()
    operations = {c.operation for c in report.crashes}
    assert {"open", "write", "fsync", "unlink"} <= operations or {
        "open",
        "pwrite",
        "fdatasync",
        "unlink",
    } <= operations


def test_sqlite_synchronous_off_power_loss_loses_a_commit(
    crash: CrashInjector, sqlite_db: Path
) -> None:
    report = crash.explore_files(
        _sqlite_commits,
        sqlite_db.parent,
        args=(sqlite_db, "OFF"),
        mode="power-loss",
        check=_sqlite_consistent,
    )
    assert not report.ok
    assert any("lost" in v.found or "integrity" in v.found.lower() for v in report.violations)


def test_sqlite_synchronous_extra_survives_power_loss(
    crash: CrashInjector, sqlite_db: Path
) -> None:
    report = crash.explore_files(
        _sqlite_commits,
        sqlite_db.parent,
        args=(sqlite_db, "EXTRA"),
        mode="power-loss",
        check=_sqlite_consistent,
    )
    report.assert_ok()


# -- the project's StateManager --------------------------------------------------------


def _state_manager_check(state: filecrash.FileState) -> None:
    settings = Settings(state.path, durable=True)
    document = StateManager("s1", settings=settings).read_json("doc.json")
    assert document["n"] in (0, 1)
    if state.acknowledged:
        assert document["n"] == 1, f"acknowledged update lost: {document}"


def _update(root: Path, durable: bool) -> None:
    StateManager("s1", settings=Settings(root, durable=durable)).update_json("doc.json", {"n": 1})
    ack("n=1")


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    StateManager("s1", settings=Settings(root)).write_json("doc.json", {"n": 0})
    return root


@pytest.mark.parametrize("mode", ["kill", "error", "power-loss"])
def test_state_manager_durable_has_no_violation(
    crash: CrashInjector, state_root: Path, mode: str
) -> None:
    report = crash.explore_files(
        _update, state_root, args=(state_root, True), mode=mode, check=_state_manager_check
    )
    report.assert_ok()
    # The crash points are its write protocol: temp created, written, fsynced,
    # renamed onto the target, the directory fsynced.
    operations = [c.operation for c in report.crashes]
    assert operations == ["open", "write", "fsync", "rename", "fsync"]
    # The temp file's name is drawn at random in each run: only its shape is fixed.
    for crash_point in (report.crashes[0], report.crashes[3]):
        assert crash_point.path.startswith("s1/.doc.json.")
        assert crash_point.path.endswith(".tmp")
    assert report.crashes[4].path == "s1"


def test_state_manager_not_durable_power_loss_finds_the_lost_update(
    crash: CrashInjector, state_root: Path
) -> None:
    report = crash.explore_files(
        _update,
        state_root,
        args=(state_root, False),
        mode="power-loss",
        check=_state_manager_check,
    )
    assert [c.operation for c in report.crashes] == ["open", "write", "rename"]
    assert any("acknowledged update lost" in v.found for v in report.violations)


# -- a temp-file-and-rename writer that never fsyncs the directory --------------------


def _rename_writer(path: Path) -> None:
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "w") as f:
        json.dump({"version": 2}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    ack(2)


def _version_acknowledged(state: filecrash.FileState) -> None:
    document = json.loads((state.path / "config.json").read_text())
    if state.acknowledged:
        assert document["version"] == 2, f"acknowledged rename undone: {document}"


def test_rename_without_dir_fsync_survives_kill(crash: CrashInjector, data_dir: Path) -> None:
    (data_dir / "config.json").write_text(json.dumps({"version": 1}))
    report = crash.explore_files(
        _rename_writer, data_dir, args=(data_dir / "config.json",), check=_version_acknowledged
    )
    report.assert_ok()
    assert [c.operation for c in report.crashes] == ["open", "write", "fsync", "rename"]


def test_rename_without_dir_fsync_power_loss_finds_undone_rename(
    crash: CrashInjector, data_dir: Path
) -> None:
    (data_dir / "config.json").write_text(json.dumps({"version": 1}))
    report = crash.explore_files(
        _rename_writer,
        data_dir,
        args=(data_dir / "config.json",),
        mode="power-loss",
        check=_version_acknowledged,
    )
    assert not report.ok
    labels = [v.state for v in report.violations]
    assert any("rename 'config.json.tmp' -> 'config.json'" in label for label in labels), labels
    assert all(v.crash is None for v in report.violations)  # only after it was acknowledged


# -- arguments, support, and a hung target ----------------------------------------------------


def test_files_supported_here(crash: CrashInjector) -> None:
    # This project's CI machine (Linux, x86_64 or aarch64) can run it: say so loudly if not.
    assert crash.files_supported, filecrash.unsupported_reason()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"target": 5}, TypeError, "target must be callable, not int"),
        (
            {"mode": "melt"},
            ValueError,
            "mode must be one of 'kill', 'error', 'power-loss', not 'melt'",
        ),
        ({"check": 5}, TypeError, "check must be callable or None, not int"),
        ({"max_runs": "many"}, TypeError, "max_runs must be an integer >= 1, not str"),
        ({"timeout": -1}, ValueError, "timeout must be a positive number"),
        ({"directory": 5}, TypeError, "directory must be a str or a path, not int"),
        ({"directory": "/no/such/dir"}, ValueError, "must be an existing directory"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(
    crash: CrashInjector, data_dir: Path, kwargs: dict[str, object], error: type, match: str
) -> None:
    call: dict[str, object] = {"target": lambda: None, "directory": data_dir, **kwargs}
    target, directory = call.pop("target"), call.pop("directory")
    with pytest.raises(error, match=match):
        crash.explore_files(target, directory, **call)  # type: ignore[arg-type]


def test_a_hung_target_is_killed_at_the_timeout_and_reported(
    crash: CrashInjector, data_dir: Path
) -> None:
    def hang(directory: Path) -> None:
        (directory / "a").write_text("x")
        time.sleep(60)

    started = time.monotonic()
    report = crash.explore_files(hang, data_dir, args=(data_dir,), timeout=2.0)
    assert time.monotonic() - started < 50  # far below the 60 s the target would take
    assert not report.ok
    assert list(data_dir.iterdir()) == []  # restored to the state before the first run
