"""The strategies against the real StateManager: valid values are accepted and read
back unchanged, invalid ones are refused with SessionValueError and touch nothing,
dot paths round-trip, updates read back, every kind of hostile input is generated,
and failures shrink to small examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument, NoSuchExample

from pytest_sessionstate import (
    SessionValueError,
    Settings,
    StateManager,
    get_session_or_raise,
    list_sessions,
)
from pytest_sessionstate import strategies as ss
from pytest_sessionstate.codec import find_invalid
from pytest_sessionstate.dotpath import apply_updates, join, normalize, split
from pytest_sessionstate.names import MAX_NAME_LENGTH, WINDOWS_RESERVED_NAMES, is_valid_name

PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEARCH = settings(max_examples=5000, database=None, deadline=None, derandomize=True)
# Does the strategy generate such a value at all?  No need to shrink the answer.
REACH = settings(SEARCH, phases=[Phase.generate])


@pytest.fixture(scope="module")
def fresh_settings(tmp_path_factory: pytest.TempPathFactory):
    """A factory of fresh, empty roots, usable inside @given (one root per example)."""
    base = tmp_path_factory.mktemp("roots")

    @contextmanager
    def make() -> Iterator[Settings]:
        with tempfile.TemporaryDirectory(dir=base) as root:
            yield Settings(root, durable=False)

    return make


def _tree(root: Path) -> dict[str, bytes | None]:
    """Everything under ``root``: relative path -> bytes (None for directories)."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in files:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def _get(document: Any, path: tuple[str, ...]) -> Any:
    for segment in path:
        document = document[segment]
    return document


# -- argument validation --------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_depth": 0},
        {"min_depth": -1},
        {"min_depth": 3, "max_depth": 2},
        {"min_depth": "1"},
        {"max_depth": 2.0},
        {"min_depth": True},
        {"max_depth": None},
    ],
)
def test_dot_paths_rejects_bad_depths_when_called(kwargs):
    with pytest.raises(InvalidArgument):
        ss.dot_paths(**kwargs)


@pytest.mark.parametrize(
    "document",
    [[], "a", 1, {"a": {1, 2}}, {"a": float("nan")}, {1: "a"}, {"a": {"b": b"x"}}],
)
def test_dot_path_updates_rejects_a_document_that_is_not_a_json_object(document):
    with pytest.raises(InvalidArgument):
        ss.dot_path_updates(document)


def test_dot_path_updates_copies_the_document():
    document = {"a": {"b": 1}}
    strategy = ss.dot_path_updates(document)
    document["a"] = 5  # would make ("a", "b") run through a number

    @PROPERTY
    @given(strategy)
    def check(updates):
        apply_updates({"a": {"b": 1}}, updates)

    check()


# -- valid values: accepted and read back ---------------------------------------------


@PROPERTY
@given(ss.session_ids(), ss.filenames())
def test_generated_names_are_valid(session_id, filename):
    assert is_valid_name(session_id)
    assert is_valid_name(filename)
    assert len(session_id) <= MAX_NAME_LENGTH


@PROPERTY
@given(session_id=ss.session_ids(), filename=ss.filenames(), document=ss.documents())
def test_valid_names_and_documents_round_trip(fresh_settings, session_id, filename, document):
    assert find_invalid(document) is None
    with fresh_settings() as s:
        manager = StateManager(session_id, settings=s)
        manager.write_json(filename, document)
        assert manager.read_json(filename) == document
        assert manager.list_files() == [filename]
        assert list_sessions(settings=s) == [session_id]
        assert get_session_or_raise(session_id, settings=s).exists(filename)
        # The standard json module reads the file back to an equal value.
        path = s.root / session_id / filename
        assert json.loads(path.read_text(encoding="utf-8")) == document


@PROPERTY
@given(value=ss.json_values())
def test_json_values_round_trip_through_a_file(fresh_settings, value):
    assert find_invalid(value) is None
    with fresh_settings() as s:
        manager = StateManager("values", settings=s)
        manager.write_json("value.json", {"value": value})
        assert manager.read_json("value.json") == {"value": value}


def test_long_names_at_the_limit_are_generated():
    assert len(find(ss.session_ids(), lambda n: len(n) == MAX_NAME_LENGTH, settings=SEARCH)) == 255
    assert 200 < len(find(ss.filenames(), lambda n: len(n) > 200, settings=SEARCH)) <= 255


def test_filenames_with_extensions_are_generated():
    assert find(ss.filenames(), lambda n: n.endswith(".json"), settings=SEARCH)


# -- dot paths ------------------------------------------------------------------------


@PROPERTY
@given(st.data())
def test_dot_paths_split_into_segments_within_the_depth(data):
    min_depth = data.draw(st.integers(1, 4), label="min_depth")
    max_depth = data.draw(st.integers(min_depth, 6), label="max_depth")
    path = data.draw(ss.dot_paths(min_depth=min_depth, max_depth=max_depth), label="path")
    segments = split(path)
    assert min_depth <= len(segments) <= max_depth
    assert all(segments)
    assert join(segments) == path


@PROPERTY
@given(path=ss.dot_paths(), value=ss.json_values())
def test_a_dot_path_addresses_the_nested_key_it_names(fresh_settings, path, value):
    with fresh_settings() as s:
        manager = StateManager("paths", settings=s)
        manager.write_json("doc.json", {})
        manager.update_json("doc.json", {path: value})
        document = manager.read_json("doc.json")
    segments = split(path)
    assert _get(document, segments) == value
    # One key per level: the segments, unescaped, are the keys.
    node: Any = document
    for segment in segments[:-1]:
        assert list(node) == [segment]
        node = node[segment]


@PROPERTY
@given(st.lists(st.text(min_size=1), min_size=1, max_size=6))
def test_split_join_round_trips_any_segments(segments):
    assert split(join(segments)) == tuple(segments)


def test_dot_paths_generate_escaped_dots_and_backslashes():
    assert "." in find(ss.dot_paths(max_depth=1), lambda p: "." in split(p)[0], settings=SEARCH)
    assert "\\" in find(ss.dot_paths(), lambda p: any("\\" in s for s in split(p)), settings=SEARCH)


# -- updates --------------------------------------------------------------------------

DOCUMENTS_AND_UPDATES = ss.documents().flatmap(
    lambda document: st.tuples(st.just(document), ss.dot_path_updates(document))
)


def _leaf_paths(document: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in document.items():
        if isinstance(value, dict) and value:
            yield from _leaf_paths(value, (*prefix, key))
        else:
            yield (*prefix, key)


@PROPERTY
@given(DOCUMENTS_AND_UPDATES)
def test_updates_apply_read_back_and_keep_the_rest(fresh_settings, document_and_updates):
    document, updates = document_and_updates
    paths = [normalize(key) for key in updates]
    with fresh_settings() as s:
        manager = StateManager("updates", settings=s)
        manager.write_json("doc.json", document)
        result = manager.update_json("doc.json", updates)
        assert manager.read_json("doc.json") == result
    assert result == apply_updates(document, updates)
    # No conflicts: the order of application does not matter...
    assert apply_updates(document, dict(reversed(list(updates.items())))) == result
    # ...every path reads back its own value (no other update touches it)...
    for path, value in zip(paths, updates.values(), strict=True):
        assert _get(result, path) == value
    # ...and every leaf of the document that no update touches is unchanged.
    for leaf in _leaf_paths(document):
        if not any(leaf[: len(p)] == p or p[: len(leaf)] == leaf for p in paths):
            assert _get(result, leaf) == _get(document, leaf)


@PROPERTY
@given(ss.dot_path_updates())
def test_updates_of_an_empty_document_create_their_paths(fresh_settings, updates):
    with fresh_settings() as s:
        manager = StateManager("new", settings=s)
        manager.write_json("doc.json", {})
        result = manager.update_json("doc.json", updates)
    for key, value in updates.items():
        assert _get(result, normalize(key)) == value


def _kinds(document: dict[str, Any], updates: dict[Any, Any]) -> set[str]:
    kinds = set()
    for key in updates:
        path = normalize(key)
        kinds.add("tuple" if isinstance(key, tuple) else "str")
        node: Any = document
        for segment in path:
            if not isinstance(node, dict) or segment not in node:
                kinds.add("new")
                break
            node = node[segment]
        else:
            kinds.add("object" if isinstance(node, dict) else "leaf")
    return kinds


@pytest.mark.parametrize("kind", ["new", "leaf", "object", "str", "tuple"])
def test_updates_mix_new_paths_existing_leaves_and_objects(kind):
    document, updates = find(DOCUMENTS_AND_UPDATES, lambda du: kind in _kinds(*du), settings=REACH)
    assert kind in _kinds(document, updates)


# -- shrinking ------------------------------------------------------------------------


def test_an_update_failure_shrinks_to_a_short_path_and_a_small_document():
    # Say the code under test mishandles keys with a dot: the smallest failure is
    # one update of one one-character segment, and an empty document (or, when the
    # shrinker settles on updating an existing key, a document with just that key).
    document, updates = find(
        DOCUMENTS_AND_UPDATES,
        lambda du: any("." in segment for key in du[1] for segment in normalize(key)),
        settings=SEARCH,
    )
    assert document in ({}, {".": None})
    assert len(updates) == 1
    [key] = updates
    assert normalize(key) == (".",)
    assert updates[key] is None


def test_an_existing_leaf_failure_shrinks_to_a_one_key_document():
    document, updates = find(
        DOCUMENTS_AND_UPDATES, lambda du: "leaf" in _kinds(*du), settings=SEARCH
    )
    assert len(document) == 1
    assert len(updates) == 1
    assert len(normalize(next(iter(updates)))) == 1


def test_names_shrink_to_one_character():
    assert find(ss.session_ids(), lambda n: True, settings=SEARCH) == "a"
    assert find(ss.filenames(), lambda n: True, settings=SEARCH) == "a"
    # Past the short names: the shortest of the long ones, all zeros after the first.
    assert find(ss.filenames(), lambda n: len(n) > 30, settings=SEARCH) == "a" + "0" * 200


def test_a_document_failure_shrinks_to_a_small_document():
    document = find(
        ss.documents(), lambda d: any(isinstance(v, dict) for v in d.values()), settings=SEARCH
    )
    assert document == {"": {}}


# -- invalid values: refused, nothing touched -----------------------------------------


@PROPERTY
@given(bad=ss.invalid_session_ids())
def test_invalid_session_ids_are_refused(fresh_settings, bad):
    assert not is_valid_name(bad)
    with fresh_settings() as s:
        with pytest.raises(SessionValueError):
            StateManager(bad, settings=s)
        with pytest.raises(SessionValueError):
            get_session_or_raise(bad, settings=s)
        with pytest.raises(SessionValueError):
            s.get_session_path(bad)
        assert _tree(s.root) == {}


@PROPERTY
@given(bad=ss.invalid_filenames())
def test_invalid_filenames_are_refused_and_nothing_is_touched(fresh_settings, bad):
    assert not is_valid_name(bad)
    with fresh_settings() as s:
        manager = StateManager("victim", settings=s)
        manager.write_json("state.json", {"kept": True})
        before = _tree(s.root)
        with pytest.raises(SessionValueError):
            manager.write_json(bad, {"x": 1})
        with pytest.raises(SessionValueError):
            manager.read_json(bad)
        with pytest.raises(SessionValueError):
            manager.update_json(bad, {"x": 1})
        with pytest.raises(SessionValueError), manager.transaction(bad, default={}):
            pass
        with pytest.raises(SessionValueError):
            manager.exists(bad)
        with pytest.raises(SessionValueError):
            manager.delete(bad)
        assert _tree(s.root) == before


@PROPERTY
@given(bad=ss.invalid_dot_paths(), good=ss.dot_paths())
def test_invalid_dot_paths_are_refused_and_the_file_is_unchanged(fresh_settings, bad, good):
    with pytest.raises(SessionValueError):
        normalize(bad)
    with fresh_settings() as s:
        manager = StateManager("paths", settings=s)
        manager.write_json("doc.json", {"a": 1})
        before = _tree(s.root)
        with pytest.raises(SessionValueError):
            manager.update_json("doc.json", {bad: 1})
        # A good update next to it does not slip through either.
        with pytest.raises(SessionValueError):
            manager.update_json("doc.json", {good: 2, bad: 1})
        assert _tree(s.root) == before


def _is_reserved(name: object) -> bool:
    return isinstance(name, str) and name.split(".", 1)[0].upper() in WINDOWS_RESERVED_NAMES


# Every kind of hostile name API.md lists: each must be generated.
NAME_KINDS = {
    "empty": lambda n: n == "",
    "dot": lambda n: n == ".",
    "dot-dot": lambda n: n == "..",
    "leading dot": lambda n: isinstance(n, str) and len(n) > 2 and n.startswith("."),
    "slash": lambda n: isinstance(n, str) and "/" in n,
    "backslash": lambda n: isinstance(n, str) and "\\" in n,
    "traversal": lambda n: isinstance(n, str) and ("../" in n or "/.." in n),
    "absolute": lambda n: isinstance(n, str) and n.startswith("/"),
    "drive": lambda n: isinstance(n, str) and n[1:3] in (":\\", ":/"),
    "NUL": lambda n: isinstance(n, str) and "\x00" in n,
    "too long": lambda n: isinstance(n, str) and len(n) > MAX_NAME_LENGTH,
    "reserved": lambda n: _is_reserved(n) and "." not in n,
    "reserved with extension": lambda n: _is_reserved(n) and "." in n,
    "reserved lower case": lambda n: _is_reserved(n) and n[:3].islower(),
    "reserved mixed case": lambda n: _is_reserved(n) and not n[:3].isupper() and n[0].isupper(),
    "space": lambda n: isinstance(n, str) and " " in n,
    "non-ASCII": lambda n: isinstance(n, str) and not n.isascii(),
    "int": lambda n: type(n) is int,
    "bytes": lambda n: isinstance(n, bytes),
    "path object": lambda n: isinstance(n, PurePath),
}


@pytest.mark.parametrize("strategy", [ss.invalid_session_ids, ss.invalid_filenames])
@pytest.mark.parametrize("kind", list(NAME_KINDS))
def test_every_kind_of_hostile_name_is_generated(strategy, kind):
    example = find(strategy(), NAME_KINDS[kind], settings=REACH)
    assert not is_valid_name(example)


def test_invalid_session_ids_include_none_but_invalid_filenames_do_not():
    assert find(ss.invalid_session_ids(), lambda n: n is None, settings=SEARCH) is None
    # exists(None) and delete(None) mean "the whole session": None is no bad filename.
    with pytest.raises(NoSuchExample):
        find(
            ss.invalid_filenames(), lambda n: n is None, settings=settings(REACH, max_examples=500)
        )


def test_invalid_filenames_include_the_lock_file_and_temp_files():
    assert find(ss.invalid_filenames(), lambda n: n == ".lock", settings=SEARCH)
    assert find(ss.invalid_filenames(), lambda n: str(n).endswith(".tmp"), settings=SEARCH)


def _path_problem(path: object) -> str:
    with pytest.raises(SessionValueError) as info:
        normalize(path)
    return str(info.value.details["problem"])


PATH_KINDS = {
    "empty string": lambda p: p == "",
    "leading empty segment": lambda p: isinstance(p, str) and len(p) > 1 and p.startswith("."),
    "inner empty segment": lambda p: isinstance(p, str) and ".." in p.strip("."),
    "trailing empty segment": lambda p: (
        isinstance(p, str) and p.endswith(".") and not p.endswith("\\.") and len(p) > 1
    ),
    "dangling backslash": lambda p: "dangling" in _path_problem(p) and len(p) > 1,
    "unknown escape": lambda p: "unknown escape" in _path_problem(p),
    "empty tuple": lambda p: p == (),
    "tuple with an empty segment": lambda p: isinstance(p, tuple) and "" in p,
    "tuple with a non-str segment": lambda p: (
        isinstance(p, tuple) and any(not isinstance(s, str) for s in p)
    ),
    "not a str or tuple": lambda p: not isinstance(p, (str, tuple)),
}


@pytest.mark.parametrize("kind", list(PATH_KINDS))
def test_every_kind_of_malformed_dot_path_is_generated(kind):
    example = find(ss.invalid_dot_paths(), PATH_KINDS[kind], settings=REACH)
    _path_problem(example)


# -- import cost ----------------------------------------------------------------------


def test_the_package_and_the_plugin_do_not_import_hypothesis():
    code = (
        "import sys, pytest_sessionstate, pytest_sessionstate.plugin\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'hypothesis'))\n"
        "import pytest_sessionstate.strategies, pytest_sessionstate.stateful\n"
        "print('hypothesis' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    # The second line proves the check can see hypothesis when it is imported.
    assert result.stdout.split("\n")[:2] == ["[]", "True"]
