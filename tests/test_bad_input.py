"""Bad input gets a clear error, and nothing on disk is touched.

Every hostile case of API.md "Bad input" is run against a populated root, and a
byte-for-byte snapshot of the whole tree (names, types, modes, contents, link
targets; the directory outside the root included) is compared before and after.
"""

from __future__ import annotations

import datetime
import errno
import os
import stat
import uuid

import pytest

from pytest_sessionstate import (
    SessionCorruptError,
    SessionNotFoundError,
    SessionValueError,
    Settings,
    StateManager,
    get_session_or_raise,
    list_sessions,
    probes,
)
from pytest_sessionstate.fsops import is_temp_name

ORPHAN = ".a.json.0123456789abcdef.tmp"
GOOD = {"v": 1, "nested": {"k": "x", "deeper": {"n": 2}}, "list": [1, {"in": "list"}], "s": "t"}


def snapshot(top):
    """Everything under ``top``: relative path -> (kind, mode, content or link target)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, top)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = ("link", None, os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = ("dir", stat.S_IMODE(info.st_mode), None)
            else:
                with open(path, "rb") as f:
                    found[rel] = ("file", stat.S_IMODE(info.st_mode), f.read())
    return found


@pytest.fixture
def world(tmp_path):
    """A root with a healthy session, corrupt files, an orphan, and a secret outside."""
    cfg = Settings(tmp_path / "root", lock_timeout=5)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_bytes(b'{"secret": true}\n')
    manager = StateManager("s1", settings=cfg)
    manager.write_json("a.json", GOOD)
    manager.write_json("b.json", {"other": [1, 2, 3]})
    (manager.session_dir / ORPHAN).write_bytes(b'{"half')
    (cfg.root / "evil").symlink_to(outside)
    (manager.session_dir / "link.json").symlink_to(outside / "secret.json")
    (manager.session_dir / "linkdir").symlink_to(outside)
    StateManager("s2", settings=cfg).write_json("x.json", {})
    return tmp_path, cfg, manager


def unchanged(world, action, error):
    """Run ``action``; it must raise ``error``, and leave the whole tree as it was."""
    top, _, _ = world
    before = snapshot(top)
    with pytest.raises(error) as info:
        action()
    assert snapshot(top) == before
    return info.value


# -- hostile session ids and filenames ------------------------------------------------------

HOSTILE_NAMES = [
    "..",
    ".",
    "../s2",
    "../../etc/passwd",
    "a/b",
    "/",
    "/etc/passwd",
    "\\",
    "..\\s2",
    "C:\\Windows",
    "a\x00b",
    "",
    "x" * 256,
    ".lock",
    ".hidden",
    ORPHAN,
    "CON",
    "nul",
    "com1.json",
    "LPT9.txt",
    "caf\u00e9",
    "\u2024\u2024",  # one-dot leaders, look like ".."
    "s\u200b1",  # zero-width space
    "a b",
    "a\nb",
    None,
    42,
    b"s1",
]
HOSTILE_IDS = [*HOSTILE_NAMES, str(os.sep)]


@pytest.mark.parametrize("sid", HOSTILE_IDS)
def test_hostile_session_ids(world, sid):
    _, cfg, _ = world
    for action in (
        lambda: StateManager(sid, settings=cfg),
        lambda: get_session_or_raise(sid, settings=cfg),
        lambda: cfg.get_session_path(sid),
    ):
        err = unchanged(world, action, SessionValueError)
        assert "session id" in str(err)


OPS = {
    "read_json": lambda m, f: m.read_json(f),
    "write_json": lambda m, f: m.write_json(f, {"pwned": True}),
    "update_json": lambda m, f: m.update_json(f, {"pwned": True}),
    "transaction": lambda m, f: m.transaction(f, default={}).__enter__(),
    "exists": lambda m, f: m.exists(f),
    "delete": lambda m, f: m.delete(f),
}


@pytest.mark.parametrize(
    ("op", "filename"),
    [
        (op, name)
        for op in OPS
        for name in HOSTILE_NAMES
        # None is no filename there: it means the whole session.
        if not (name is None and op in ("exists", "delete"))
    ],
)
def test_hostile_filenames(world, op, filename):
    _, _, manager = world
    err = unchanged(world, lambda: OPS[op](manager, filename), SessionValueError)
    assert "filename" in str(err)


def test_symlinked_session_dir_pointing_out_is_refused(world):
    top, cfg, _ = world
    unchanged(world, lambda: StateManager("evil", settings=cfg), SessionValueError)
    unchanged(world, lambda: get_session_or_raise("evil", settings=cfg), SessionValueError)
    assert list_sessions(settings=cfg) == ["s1", "s2"]
    assert (top / "outside" / "secret.json").read_bytes() == b'{"secret": true}\n'


@pytest.mark.parametrize("op", ["read_json", "write_json", "update_json", "transaction"])
def test_symlinked_file_pointing_out_is_refused(world, op):
    _, _, manager = world
    err = unchanged(world, lambda: OPS[op](manager, "link.json"), SessionValueError)
    assert "symlink" in str(err)


def test_symlinked_file_is_not_a_session_file(world):
    top, _, manager = world
    before = snapshot(top)
    assert manager.exists("link.json") is False
    assert manager.exists("linkdir") is False
    assert "link.json" not in manager.list_files()
    assert "linkdir" not in manager.list_files()
    assert snapshot(top) == before


def test_deleting_a_symlinked_file_never_touches_its_target(world):
    top, _, manager = world
    outside_before = snapshot(top / "outside")
    manager.delete("link.json")  # removes the link itself, inside the root
    assert not os.path.lexists(manager.session_dir / "link.json")
    assert snapshot(top / "outside") == outside_before


def test_deleting_a_session_never_follows_a_symlinked_directory(world):
    top, _, manager = world
    outside_before = snapshot(top / "outside")
    manager.delete()
    assert not manager.session_dir.exists()
    assert snapshot(top / "outside") == outside_before


def test_symlinked_lock_file_pointing_out_is_refused(world):
    top, cfg, manager = world
    os.unlink(manager.lock_file)
    manager.lock_file.symlink_to(top / "outside" / "new.lock")
    fresh = StateManager("s1", settings=cfg)
    for action in (
        lambda: fresh.write_json("a.json", {"pwned": True}),
        lambda: fresh.update_json("a.json", {"pwned": True}),
        lambda: fresh.lock(timeout=0).__enter__(),
        fresh.delete,
    ):
        err = unchanged(world, action, SessionValueError)
        assert "symlink" in str(err)
    assert not (top / "outside" / "new.lock").exists()


# -- data that is not JSON -------------------------------------------------------------------


class Thing:
    pass


NON_JSON_VALUES = {
    "set": {1, 2},
    "frozenset": frozenset({"a"}),
    "bytes": b"x",
    "bytearray": bytearray(b"x"),
    "object": Thing(),
    "datetime": datetime.datetime(2024, 1, 1, 12, 0),
    "date": datetime.date(2024, 1, 1),
    "uuid": uuid.UUID(int=7),
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": float("-inf"),
    "complex": 1j,
    "int-key": {1: "a"},
    "none-key": {None: "a"},
    "tuple-key": {(1, 2): "a"},
    "bool-key": {True: "a"},
    "float-key": {1.5: "a"},
}


def at_depth(value, depth):
    """``value`` nested ``depth`` levels deep, through objects and lists."""
    for level in range(depth):
        value = {"k": value} if level % 2 == 0 else [0, value]
    return value


@pytest.mark.parametrize("depth", [0, 1, 4])
@pytest.mark.parametrize("kind", list(NON_JSON_VALUES))
def test_non_json_data_is_refused_and_nothing_is_written(world, kind, depth):
    _, _, manager = world
    bad = at_depth(NON_JSON_VALUES[kind], depth)

    def mutate_in_transaction():
        with manager.transaction("a.json") as doc:
            doc["nested"]["bad"] = bad

    for action in (
        lambda: manager.write_json("a.json", {"ok": 1, "bad": bad}),
        lambda: manager.write_json("new.json", {"bad": bad}),
        lambda: manager.update_json("a.json", {"nested.bad": bad}),
        mutate_in_transaction,
    ):
        err = unchanged(world, action, SessionValueError)
        assert err.details["path"].startswith("[")
        assert "bad" in err.details["path"]


def test_non_json_in_a_new_session_creates_no_directory(world):
    _, cfg, _ = world
    fresh = StateManager("fresh", settings=cfg)
    unchanged(
        world, lambda: fresh.write_json("a.json", {"when": datetime.date.today()}), ValueError
    )
    assert not fresh.session_dir.exists()


@pytest.mark.parametrize("data", [[1, 2], "text", None, 3, ({"a": 1},)])
def test_a_document_must_be_an_object(world, data):
    _, _, manager = world
    unchanged(world, lambda: manager.write_json("a.json", data), SessionValueError)


def test_no_silent_str_conversion_of_non_str_keys(world):
    _, _, manager = world
    err = unchanged(world, lambda: manager.write_json("a.json", {1: "one"}), SessionValueError)
    assert "key 1" in str(err)


# -- dot paths and updates -------------------------------------------------------------------

BAD_PATHS = ["", ".", "a..b", ".v", "v.", "nested..k", "nested\\", "a\\", "\\", "a\\x", "..."]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_malformed_dot_paths(world, path):
    _, _, manager = world
    unchanged(world, lambda: manager.update_json("a.json", {"ok": 1, path: 1}), SessionValueError)


@pytest.mark.parametrize(
    "path",
    [(), ("",), ("a", ""), ("a", 1), 7, None, b"v"],
)
def test_malformed_path_keys(world, path):
    _, _, manager = world
    unchanged(world, lambda: manager.update_json("a.json", {path: 1}), SessionValueError)


@pytest.mark.parametrize(
    "path",
    ["v.x", "s.x", "list.0", "list.1.in", "nested.k.deeper", "nested.deeper.n.x", ("list", "0")],
)
def test_updates_through_a_scalar_or_a_list(world, path):
    _, _, manager = world
    err = unchanged(
        world, lambda: manager.update_json("a.json", {"first": 1, path: 1}), SessionValueError
    )
    assert "not an object" in str(err)


def test_update_through_null(world):
    _, _, manager = world
    manager.update_json("a.json", {"empty": None})
    unchanged(world, lambda: manager.update_json("a.json", {"empty.x": 1}), SessionValueError)


@pytest.mark.parametrize("updates", [None, [("v", 2)], "v=2", 3])
def test_updates_must_be_a_mapping(world, updates):
    _, _, manager = world
    unchanged(world, lambda: manager.update_json("a.json", updates), SessionValueError)


# -- corrupt files ---------------------------------------------------------------------------

CORRUPT = {
    "empty": b"",
    "whitespace": b"  \n",
    "truncated": b'{\n  "v": 1,\n  "nested": {',
    "truncated-string": b'{"v": "abc',
    "not-utf8": b'{"v": "\xff\xfe\xfa"}',
    "latin1": '{"v": "caf\u00e9"}'.encode("latin-1"),
    "utf16": '{"v": 1}'.encode("utf-16"),
    "top-level-array": b"[1, 2, 3]",
    "top-level-string": b'"s"',
    "top-level-null": b"null",
    "nan-token": b'{"v": NaN}',
    "infinity-token": b'{"v": Infinity}',
    "minus-infinity-token": b'{"v": -Infinity}',
    "trailing-garbage": b'{"v": 1} {"v": 2}',
    "single-quotes": b"{'v': 1}",
    "nul-bytes": b"\x00" * 16,
}


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_files_are_reported_never_repaired(world, kind):
    _, _, manager = world
    (manager.session_dir / "bad.json").write_bytes(CORRUPT[kind])

    def in_transaction():
        with manager.transaction("bad.json", default={"fresh": True}) as doc:
            doc["v"] = 2

    for action in (
        lambda: manager.read_json("bad.json"),
        lambda: manager.update_json("bad.json", {"v": 2}),
        in_transaction,
    ):
        err = unchanged(world, action, SessionCorruptError)
        assert "bad.json" in str(err)
    assert manager.list_files().count("bad.json") == 1


def test_an_overflowing_number_is_reported_as_corrupt_and_never_rewritten(world):
    # 1e400 would read as inf, which can never be written back: what read_json
    # returns must always be writable unchanged, so the file is reported instead.
    _, _, manager = world
    (manager.session_dir / "big.json").write_bytes(b'{"v": 1e400, "w": 1}')
    err = unchanged(world, lambda: manager.read_json("big.json"), SessionCorruptError)
    assert "1e400" in str(err)
    unchanged(world, lambda: manager.update_json("big.json", {"w": 2}), SessionCorruptError)


def test_missing_things_are_not_found_and_create_nothing(world):
    _, cfg, manager = world
    ghost = StateManager("ghost", settings=cfg)
    for action in (
        lambda: manager.read_json("missing.json"),
        lambda: manager.update_json("missing.json", {"a": 1}),
        lambda: manager.transaction("missing.json").__enter__(),
        lambda: manager.delete("missing.json"),
        lambda: ghost.read_json("a.json"),
        lambda: ghost.update_json("a.json", {"a": 1}),
        lambda: ghost.transaction("a.json").__enter__(),
        ghost.delete,
        lambda: ghost.delete("a.json"),
        lambda: get_session_or_raise("ghost", settings=cfg),
    ):
        unchanged(world, action, SessionNotFoundError)


@pytest.mark.parametrize("timeout", ["1", float("nan"), True, [1]])
def test_bad_lock_timeouts(world, timeout):
    _, _, manager = world
    unchanged(world, lambda: manager.lock(timeout=timeout), SessionValueError)


# -- OS errors while writing -------------------------------------------------------------------


def failing_at(point, code):
    def listener(event):
        if event.point == point:
            raise OSError(code, os.strerror(code), str(event.path or event.session_dir))

    return listener


#: Each writer, and the document it leaves in a.json (which holds GOOD before).
AFTER = {"write_json": {"v": 2}, "update_json": {**GOOD, "v": 2}, "transaction": {**GOOD, "v": 2}}
WRITERS = {
    "write_json": lambda m: m.write_json("a.json", {"v": 2}),
    "update_json": lambda m: m.update_json("a.json", {"v": 2}),
    "transaction": lambda m: _transaction_set(m, 2),
}


def _transaction_set(manager, value):
    with manager.transaction("a.json") as doc:
        doc["v"] = value


def points_of(action, manager):
    seen = []
    with probes.listen(lambda event: seen.append(event.point)):
        action(manager)
    return seen


BEFORE_RENAME = ["lock-acquired", "read", "temp-created", "temp-written", "temp-synced"]
AFTER_RENAME = ["replaced", "dir-synced", "lock-released"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EACCES])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_os_errors_at_every_write_point_propagate_and_leave_no_trace(world, writer, code):
    top, _, manager = world
    action = WRITERS[writer]
    reached = points_of(action, manager)  # writes v=2 once, then restore v=1
    manager.write_json("a.json", GOOD)
    assert set(reached) >= {"temp-created", "temp-written", "temp-synced", "replaced"}
    for point in reached:
        manager.write_json("a.json", GOOD)
        before = snapshot(top)
        with pytest.raises(OSError) as info, probes.listen(failing_at(point, code)):
            action(manager)
        assert info.value.errno == code, point
        after = snapshot(top)
        names = os.listdir(manager.session_dir)
        assert not [n for n in names if is_temp_name(n)], (point, names)
        document = manager.read_json("a.json")
        if point in BEFORE_RENAME:
            assert document == GOOD, point  # the previous document is intact
            assert after == before, point
        else:
            assert point in AFTER_RENAME
            assert document == AFTER[writer], point  # the rename had happened
        with manager.lock(timeout=0):  # the lock is free again
            pass


def test_a_directory_in_a_files_place_is_refused_and_nothing_is_touched(world):
    top, _, manager = world
    (manager.session_dir / "dir.json").mkdir()
    before = snapshot(top)
    for attempt in (
        lambda: manager.write_json("dir.json", {"v": 1}),
        lambda: manager.read_json("dir.json"),
        lambda: manager.update_json("dir.json", {"v": 1}),
        lambda: manager.delete("dir.json"),
    ):
        with pytest.raises(SessionValueError, match="is a directory, not a regular file"):
            attempt()
    assert not manager.exists("dir.json")
    assert snapshot(top) == before
    with manager.lock(timeout=0):
        pass


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root ignores directory permissions: the injected EACCES above covers this case",
)
def test_a_read_only_session_dir_gives_eacces_and_keeps_the_document(world):
    top, _, manager = world
    os.unlink(manager.session_dir / ORPHAN)
    os.chmod(manager.session_dir, 0o500)
    try:
        before = snapshot(top)
        with pytest.raises(OSError) as info:
            manager.write_json("a.json", {"v": 2})
        assert info.value.errno == errno.EACCES
        assert snapshot(top) == before
    finally:
        os.chmod(manager.session_dir, 0o700)
    assert manager.read_json("a.json") == GOOD
