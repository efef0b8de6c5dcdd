"""StateManager semantics: read, write, update, transaction, exists, list, delete."""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import stat
import types

import pytest

from pytest_sessionstate import (
    SessionCorruptError,
    SessionNotFoundError,
    SessionValueError,
    Settings,
    StateManager,
    get_session_or_raise,
    list_sessions,
    use_settings,
)
from pytest_sessionstate.state import LOCK_FILENAME

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"
)

ORPHAN = ".a.json.0123456789abcdef.tmp"


@pytest.fixture
def cfg(tmp_path):
    return Settings(tmp_path / "root", lock_timeout=10)


@pytest.fixture
def sm(cfg):
    return StateManager("s1", settings=cfg)


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# -- construction ------------------------------------------------------------------


def test_attributes_and_no_disk_access(cfg):
    manager = StateManager("abc", settings=cfg)
    assert manager.session_id == "abc"
    assert manager.session_dir == cfg.root / "abc"
    assert manager.lock_file == cfg.root / "abc" / LOCK_FILENAME
    assert manager.settings is cfg
    assert not cfg.root.exists()  # making a manager touches nothing
    assert "abc" in repr(manager)


def test_settings_must_be_settings(cfg):
    with pytest.raises(TypeError):
        StateManager("s", settings=str(cfg.root))


# -- read / write ---------------------------------------------------------------------


def test_write_then_read_round_trip(sm):
    doc = {"name": "caf\u00e9", "n": 1, "f": 1.5, "ok": True, "none": None, "list": [1, "x", {}]}
    sm.write_json("state.json", doc)
    assert sm.read_json("state.json") == doc
    sm.write_json("state.json", {"replaced": True})
    assert sm.read_json("state.json") == {"replaced": True}


@pytest.mark.parametrize(
    "make",
    [types.MappingProxyType, collections.OrderedDict, collections.UserDict],
    ids=["mappingproxy", "ordereddict", "userdict"],
)
def test_write_json_takes_any_mapping(sm, make):
    sm.write_json("m.json", make({"a": 1, "b": [2]}))
    assert sm.read_json("m.json") == {"a": 1, "b": [2]}


def test_file_is_indented_utf8_json_that_stdlib_reads_back(sm):
    doc = {"text": "\u65e5\u672c \u00e9", "nested": {"list": [1, 2.5, None]}, "t": (1, 2)}
    sm.write_json("a.json", doc)
    raw = (sm.session_dir / "a.json").read_bytes()
    assert raw.startswith(b'{\n  "')
    assert "\u65e5\u672c".encode() in raw
    text = raw.decode("utf-8")
    with open(sm.session_dir / "a.json", encoding="utf-8") as f:
        assert json.load(f) == {**doc, "t": [1, 2]}
    assert json.loads(text) == sm.read_json("a.json")


def test_read_missing_file_and_missing_session(sm):
    with pytest.raises(SessionNotFoundError) as info:
        sm.read_json("nope.json")
    assert info.value.details == {
        "session_id": "s1",
        "filename": "nope.json",
        "root": str(sm.settings.root),
    }
    sm.write_json("a.json", {})
    with pytest.raises(SessionNotFoundError):
        sm.read_json("nope.json")


def test_read_json_reports_corruption(sm):
    sm.write_json("a.json", {})
    (sm.session_dir / "a.json").write_bytes(b'{"a": ')
    with pytest.raises(SessionCorruptError):
        sm.read_json("a.json")


def test_read_json_with_a_non_object_refuses(sm):
    sm.write_json("a.json", {})
    (sm.session_dir / "a.json").write_bytes(b"[]")
    with pytest.raises(SessionCorruptError, match="not an object"):
        sm.read_json("a.json")


# -- modes ---------------------------------------------------------------------------


def test_new_dirs_are_0700_and_new_files_0600_whatever_the_umask(sm):
    old = os.umask(0)
    try:
        sm.write_json("a.json", {"secret": "x"})
    finally:
        os.umask(old)
    assert mode_of(sm.session_dir) == 0o700
    assert mode_of(sm.session_dir / "a.json") == 0o600
    assert mode_of(sm.lock_file) == 0o600


def test_a_file_that_exists_keeps_its_mode(sm):
    sm.write_json("a.json", {"v": 1})
    os.chmod(sm.session_dir / "a.json", 0o640)
    sm.write_json("a.json", {"v": 2})
    assert mode_of(sm.session_dir / "a.json") == 0o640
    sm.update_json("a.json", {"v": 3})
    assert mode_of(sm.session_dir / "a.json") == 0o640
    with sm.transaction("a.json") as doc:
        doc["v"] = 4
    assert mode_of(sm.session_dir / "a.json") == 0o640
    assert sm.read_json("a.json") == {"v": 4}


def test_an_existing_session_dir_keeps_its_mode(sm):
    sm.session_dir.mkdir(parents=True)
    os.chmod(sm.session_dir, 0o750)
    sm.write_json("a.json", {})
    assert mode_of(sm.session_dir) == 0o750


# -- update_json ------------------------------------------------------------------------


def test_update_json_returns_the_whole_new_document(sm):
    sm.write_json("s.json", {"status": "new", "workflow_progress": {"a": "done"}})
    result = sm.update_json(
        "s.json", {"status": "running", "workflow_progress.initialize": "completed"}
    )
    expected = {
        "status": "running",
        "workflow_progress": {"a": "done", "initialize": "completed"},
    }
    assert result == expected
    assert sm.read_json("s.json") == expected


def test_update_json_creates_intermediate_objects_and_takes_tuples_and_escapes(sm):
    sm.write_json("s.json", {})
    sm.update_json("s.json", {"a.b.c": 1, ("x.y", "z"): 2, "p\\.q": 3})
    assert sm.read_json("s.json") == {"a": {"b": {"c": 1}}, "x.y": {"z": 2}, "p.q": 3}


def test_update_json_missing_file_creates_nothing(sm, cfg):
    with pytest.raises(SessionNotFoundError):
        sm.update_json("s.json", {"a": 1})
    assert not cfg.root.exists()
    sm.write_json("other.json", {})
    with pytest.raises(SessionNotFoundError):
        sm.update_json("s.json", {"a": 1})
    assert sm.list_files() == ["other.json"]


# -- transaction -----------------------------------------------------------------------


def test_transaction_writes_on_normal_exit(sm):
    sm.write_json("t.json", {"n": 1})
    with sm.transaction("t.json") as doc:
        assert doc == {"n": 1}
        doc["n"] += 1
        doc["added"] = ["x"]
    assert sm.read_json("t.json") == {"n": 2, "added": ["x"]}


def test_transaction_writes_nothing_on_exception(sm):
    sm.write_json("t.json", {"n": 1})
    before = (sm.session_dir / "t.json").read_bytes()

    def fail():
        with sm.transaction("t.json") as doc:
            doc["n"] = 99
            raise KeyError("boom")

    with pytest.raises(KeyError):
        fail()
    assert (sm.session_dir / "t.json").read_bytes() == before
    with sm.lock(timeout=0):  # and the lock was released
        pass


def test_transaction_missing_file_without_default_raises(sm, cfg):
    with pytest.raises(SessionNotFoundError), sm.transaction("t.json"):
        pass
    assert not cfg.root.exists()


def test_transaction_default_is_deep_copied(sm):
    default = {"items": [], "meta": {"n": 0}}
    with sm.transaction("t.json", default=default) as doc:
        doc["items"].append(1)
        doc["meta"]["n"] = 5
    assert default == {"items": [], "meta": {"n": 0}}
    assert sm.read_json("t.json") == {"items": [1], "meta": {"n": 5}}
    with sm.transaction("t.json", default={"ignored": True}) as doc:
        assert doc == {"items": [1], "meta": {"n": 5}}  # the file wins when it exists


def test_transaction_default_must_be_a_mapping(sm):
    with pytest.raises(SessionValueError), sm.transaction("t.json", default=[1]):
        pass


def test_transaction_refuses_non_json_at_exit_and_writes_nothing(sm):
    sm.write_json("t.json", {"n": 1})
    before = (sm.session_dir / "t.json").read_bytes()

    def put_a_set():
        with sm.transaction("t.json") as doc:
            doc["bad"] = {1, 2}

    with pytest.raises(SessionValueError, match="bad"):
        put_a_set()
    assert (sm.session_dir / "t.json").read_bytes() == before


# -- exists / list_files / orphans ----------------------------------------------------------


def test_exists(sm):
    assert not sm.exists()
    assert not sm.exists("a.json")
    sm.write_json("a.json", {})
    assert sm.exists()
    assert sm.exists("a.json")
    assert not sm.exists("b.json")
    with pytest.raises(SessionValueError):
        sm.exists("../a.json")


def test_list_files_sorted_without_lock_temp_or_dot_files(sm):
    assert sm.list_files() == []
    for name in ["b.json", "a.json", "c-2.json"]:
        sm.write_json(name, {})
    (sm.session_dir / ORPHAN).write_bytes(b"{")
    (sm.session_dir / ".hidden").write_bytes(b"x")
    (sm.session_dir / "subdir").mkdir()
    assert sm.lock_file.exists()
    assert sm.list_files() == ["a.json", "b.json", "c-2.json"]


def test_a_write_removes_orphaned_temp_files(sm):
    sm.write_json("a.json", {"v": 1})
    orphans = [ORPHAN, ".b.json.fedcba9876543210.tmp"]
    for name in orphans:
        (sm.session_dir / name).write_bytes(b'{"half')
    sm.write_json("other.json", {})
    names = set(os.listdir(sm.session_dir))
    assert not names & set(orphans)
    assert names == {LOCK_FILENAME, "a.json", "other.json"}
    (sm.session_dir / ORPHAN).write_bytes(b"x")
    sm.update_json("a.json", {"v": 2})
    assert ORPHAN not in os.listdir(sm.session_dir)
    (sm.session_dir / ORPHAN).write_bytes(b"x")
    with sm.transaction("a.json") as doc:
        doc["v"] = 3
    assert ORPHAN not in os.listdir(sm.session_dir)


def test_dot_files_that_are_not_temp_files_are_left_alone(sm):
    sm.write_json("a.json", {})
    (sm.session_dir / ".keep").write_bytes(b"mine")
    (sm.session_dir / ".a.json.tmp").write_bytes(b"not ours: no random part")
    sm.write_json("a.json", {"v": 1})
    assert (sm.session_dir / ".keep").read_bytes() == b"mine"
    assert (sm.session_dir / ".a.json.tmp").exists()


# -- delete --------------------------------------------------------------------------------


def test_delete_one_file(sm):
    sm.write_json("a.json", {})
    sm.write_json("b.json", {})
    sm.delete("a.json")
    assert sm.list_files() == ["b.json"]
    with pytest.raises(SessionNotFoundError) as info:
        sm.delete("a.json")
    assert info.value.details["filename"] == "a.json"


def test_delete_the_whole_session(sm, cfg):
    sm.write_json("a.json", {})
    (sm.session_dir / "sub").mkdir()
    (sm.session_dir / "sub" / "x").write_bytes(b"x")
    sm.delete()
    assert not sm.session_dir.exists()
    assert not sm.exists()
    assert list(cfg.root.iterdir()) == []
    with pytest.raises(SessionNotFoundError) as info:
        sm.delete()
    assert info.value.details == {"session_id": "s1", "root": str(sm.settings.root)}
    with pytest.raises(SessionNotFoundError):
        sm.delete("a.json")


def test_a_session_can_be_used_again_after_delete(sm):
    sm.write_json("a.json", {"v": 1})
    sm.delete()
    sm.write_json("a.json", {"v": 2})
    assert sm.read_json("a.json") == {"v": 2}


def test_delete_does_not_follow_a_symlinked_subdirectory(sm, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_bytes(b"keep me")
    sm.write_json("a.json", {})
    (sm.session_dir / "link").symlink_to(outside)
    sm.delete()
    assert (outside / "precious").read_bytes() == b"keep me"


# -- get_session_or_raise / list_sessions --------------------------------------------------------


def test_get_session_or_raise(cfg):
    with pytest.raises(SessionNotFoundError) as info:
        get_session_or_raise("s1", settings=cfg)
    assert info.value.details == {"session_id": "s1", "root": str(cfg.root)}
    StateManager("s1", settings=cfg).write_json("a.json", {"v": 1})
    manager = get_session_or_raise("s1", settings=cfg)
    assert isinstance(manager, StateManager)
    assert manager.read_json("a.json") == {"v": 1}
    with pytest.raises(SessionValueError):
        get_session_or_raise("../s1", settings=cfg)


def test_get_session_or_raise_and_list_sessions_use_the_settings_in_force(cfg):
    StateManager("s1", settings=cfg).write_json("a.json", {})
    with use_settings(cfg):
        assert get_session_or_raise("s1").settings is cfg
        assert list_sessions() == ["s1"]


def test_list_sessions_sorted_and_only_valid_session_dirs(cfg, tmp_path):
    assert list_sessions(settings=cfg) == []  # an absent root has no sessions
    for sid in ["zeta", "alpha", "m-2"]:
        StateManager(sid, settings=cfg).write_json("a.json", {})
    (cfg.root / "a-file").write_bytes(b"x")
    (cfg.root / ".hidden").mkdir()
    (cfg.root / "caf\u00e9").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (cfg.root / "linked").symlink_to(tmp_path / "elsewhere")
    assert list_sessions(settings=cfg) == ["alpha", "m-2", "zeta"]
    StateManager("alpha", settings=cfg).delete()
    assert list_sessions(settings=cfg) == ["m-2", "zeta"]


# -- atomicity seen by a concurrent reader -------------------------------------------------------


def _reader(root, stop, bad, seen):
    manager = StateManager("s1", settings=Settings(root))
    while not stop.is_set():
        doc = manager.read_json("big.json")
        seen.value += 1
        if doc not in (OLD, NEW):
            bad.value += 1


OLD = {"version": "old", "payload": ["o" * 100] * 2000}
NEW = {"version": "new", "payload": ["n" * 50] * 5000}


def test_readers_see_the_old_or_the_new_document_never_a_mix(tmp_path):
    cfg = Settings(tmp_path / "root", durable=False)
    manager = StateManager("s1", settings=cfg)
    manager.write_json("big.json", OLD)
    ctx = multiprocessing.get_context("fork")
    stop, bad, seen = ctx.Event(), ctx.Value("i", 0), ctx.Value("i", 0)
    reader = ctx.Process(target=_reader, args=(str(cfg.root), stop, bad, seen))
    reader.start()
    try:
        for i in range(60):
            manager.write_json("big.json", NEW if i % 2 == 0 else OLD)
    finally:
        stop.set()
        reader.join(20)
        if reader.is_alive():
            reader.kill()
    assert reader.exitcode == 0
    assert seen.value > 0
    assert bad.value == 0


# -- a failed first write leaves no session behind --------------------------------------------


def _change_then_fail(manager):
    with manager.transaction("a.json", default={"n": 0}) as document:
        document["n"] = 1
        raise KeyError("inside")


def test_a_failed_transaction_on_a_new_session_leaves_no_session(sm, cfg):
    with pytest.raises(KeyError):
        _change_then_fail(sm)
    assert not sm.exists()
    assert list_sessions(settings=cfg) == []


def test_a_refused_first_write_in_a_transaction_leaves_no_session(sm, cfg):
    with pytest.raises(SessionValueError), sm.transaction("a.json", default={}) as document:
        document["bad"] = {1, 2}
    assert list_sessions(settings=cfg) == []


def test_a_failed_transaction_keeps_a_session_that_existed(sm, cfg):
    with sm.lock():
        pass  # the session exists now, empty but for its lock file
    with pytest.raises(KeyError), sm.transaction("a.json", default={}):
        raise KeyError("inside")
    assert sm.exists()
    assert list_sessions(settings=cfg) == ["s1"]


def test_a_failed_first_write_keeps_the_session_when_an_outer_lock_created_it(sm, cfg):
    with sm.lock():
        with pytest.raises(KeyError), sm.transaction("a.json", default={}):
            raise KeyError("inside")
        assert sm.exists()  # the outer block owns the new session
    assert list_sessions(settings=cfg) == ["s1"]
