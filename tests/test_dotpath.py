"""Dot paths: properties of split/join and apply_updates, checked with Hypothesis."""

from __future__ import annotations

import copy

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pytest_sessionstate import SessionValueError
from pytest_sessionstate.dotpath import apply_updates, join, normalize, split

# Segments drawn mostly from the characters that matter (dots, backslashes).
segment_text = st.text(alphabet=st.sampled_from("ab.\\x\u00e9 "), min_size=1, max_size=6) | st.text(
    min_size=1, max_size=8
)
segment_tuples = st.lists(segment_text, min_size=1, max_size=5).map(tuple)

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=10,
)
keys = st.sampled_from(["a", "b", "c", "a.b", "x\\y"])
documents = st.recursive(
    st.dictionaries(keys, scalars, max_size=3),
    lambda inner: st.dictionaries(keys, inner | scalars, max_size=3),
    max_leaves=12,
)
paths = st.lists(keys, min_size=1, max_size=3).map(tuple)
updates_strategy = st.dictionaries(paths, json_values, max_size=4)

EXAMPLES = 200


def get(document, segments):
    for segment in segments:
        document = document[segment]
    return document


def is_prefix(a, b):
    return len(a) <= len(b) and b[: len(a)] == a


@settings(max_examples=EXAMPLES, deadline=None)
@given(segment_tuples)
def test_split_join_round_trip(segments):
    assert split(join(segments)) == segments
    assert normalize(join(segments)) == segments
    assert normalize(segments) == segments


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab.\\"), max_size=10))
def test_split_accepts_exactly_the_well_formed_paths(path):
    try:
        segments = split(path)
    except SessionValueError as exc:
        problem = exc.details["problem"]
        well_formed = False
    else:
        well_formed = True
    # Well-formed: no empty segment, every backslash escapes '.' or '\\'.
    expected = bool(path) and _well_formed(path)
    assert well_formed == expected, path
    if well_formed:
        assert all(segments)
        assert join(segments) == path  # a well-formed path has one spelling
    else:
        assert problem


def _well_formed(path):
    segment_length = 0
    index = 0
    while index < len(path):
        char = path[index]
        if char == "\\":
            if index + 1 == len(path) or path[index + 1] not in ".\\":
                return False
            segment_length += 1
            index += 2
            continue
        if char == ".":
            if not segment_length:
                return False
            segment_length = 0
        else:
            segment_length += 1
        index += 1
    return segment_length > 0


@settings(max_examples=EXAMPLES, deadline=None)
@given(segment_tuples, st.integers(min_value=0, max_value=5))
def test_an_empty_segment_anywhere_is_rejected(segments, where):
    where = min(where, len(segments))
    path = join(segments[:where]) if where else ""
    rest = join(segments[where:]) if where < len(segments) else ""
    broken = f"{path}..{rest}" if path and rest else (f".{rest}" if rest else f"{path}.")
    with pytest.raises(SessionValueError, match="empty segment"):
        split(broken)


@settings(max_examples=EXAMPLES, deadline=None)
@given(segment_tuples)
def test_a_dangling_backslash_is_rejected(segments):
    path = join(segments)
    # An odd number of trailing backslashes leaves the last one escaping nothing.
    with pytest.raises(SessionValueError, match="dangling backslash"):
        split(path + "\\")


@pytest.mark.parametrize("path", ["", ".", "a..b", ".a", "a.", "a\\", "a.b\\", "\\", "a\\x"])
def test_malformed_examples(path):
    with pytest.raises(SessionValueError):
        split(path)
    with pytest.raises(SessionValueError):
        apply_updates({}, {path: 1})


def test_escapes():
    assert split("a\\.b.c") == ("a.b", "c")
    assert split("a\\\\.b") == ("a\\", "b")
    assert join(("a.b", "c\\")) == "a\\.b.c\\\\"
    assert split("workflow_progress.initialize") == ("workflow_progress", "initialize")


@pytest.mark.parametrize("segments", [(), ("",), ("a", ""), ("a", 1), [None]])
def test_join_and_normalize_refuse_bad_segments(segments):
    with pytest.raises(SessionValueError):
        join(segments)
    if isinstance(segments, tuple):
        with pytest.raises(SessionValueError):
            normalize(segments)


@pytest.mark.parametrize("path", [1, None, b"a", ["a"]])
def test_normalize_refuses_other_types(path):
    with pytest.raises(SessionValueError):
        normalize(path)


@settings(max_examples=EXAMPLES, deadline=None)
@given(documents, updates_strategy)
def test_apply_updates_never_mutates_its_inputs(document, updates):
    before_doc = copy.deepcopy(document)
    before_updates = copy.deepcopy(updates)
    try:
        result = apply_updates(document, updates)
    except SessionValueError:
        result = None
    assert document == before_doc
    assert updates == before_updates
    if result is not None:
        # Objects along an updated path are copies, never the input's own objects, so
        # changing them later in the result cannot reach back into the input either.
        originals = _containers(document)
        assert id(result) not in originals
        for path in updates:
            node = result
            for segment in path[:-1]:
                node = node.get(segment) if isinstance(node, dict) else None
                if isinstance(node, dict):
                    assert id(node) not in originals, path


def _containers(value, found=None):
    found = set() if found is None else found
    if isinstance(value, (dict, list)):
        found.add(id(value))
        for item in value.values() if isinstance(value, dict) else value:
            _containers(item, found)
    return found


@settings(max_examples=EXAMPLES, deadline=None)
@given(documents, updates_strategy)
def test_an_untouched_path_reads_its_value(document, updates):
    try:
        result = apply_updates(document, updates)
    except SessionValueError:
        return
    items = list(updates.items())
    for index, (path, value) in enumerate(items):
        later = [p for p, _ in items[index + 1 :]]
        if any(is_prefix(p, path) or is_prefix(path, p) for p in later):
            continue  # a later update overwrote it or something under it
        assert get(result, path) == value


@settings(max_examples=EXAMPLES, deadline=None)
@given(documents, updates_strategy)
def test_values_no_update_touches_are_kept(document, updates):
    try:
        result = apply_updates(document, updates)
    except SessionValueError:
        return
    for key, value in document.items():
        if not any(path[0] == key for path in updates):
            assert result[key] == value


@settings(max_examples=EXAMPLES, deadline=None)
@given(documents, paths, scalars | st.lists(scalars, max_size=2), st.text(max_size=3), scalars)
def test_a_path_through_a_scalar_or_a_list_raises(document, prefix, blocker, tail, value):
    assume(tail)
    # Put a non-object at ``prefix`` first, then update something beneath it.
    try:
        blocked = apply_updates(document, {prefix: blocker})
    except SessionValueError:
        assume(False)  # the document already blocks the prefix itself
    before = copy.deepcopy(blocked)
    with pytest.raises(SessionValueError) as info:
        apply_updates(blocked, {(*prefix, tail): value})
    assert isinstance(info.value, ValueError)
    assert info.value.details["at"] == join(prefix)
    assert blocked == before


def test_intermediate_objects_are_created_and_tuples_need_no_escaping():
    assert apply_updates({}, {"a.b.c": 1}) == {"a": {"b": {"c": 1}}}
    assert apply_updates({}, {("a.b", "c"): 1}) == {"a.b": {"c": 1}}
    assert apply_updates({}, {"a\\.b.c": 1}) == {"a.b": {"c": 1}}
    assert apply_updates({"a": {"x": 1}}, {"a.y": 2}) == {"a": {"x": 1, "y": 2}}


def test_updates_apply_in_order():
    assert apply_updates({}, {"a": {"b": 1}, "a.c": 2}) == {"a": {"b": 1, "c": 2}}
    assert apply_updates({}, {"a.c": 2, "a": 3}) == {"a": 3}


def test_a_null_is_not_an_object():
    with pytest.raises(SessionValueError, match="NoneType"):
        apply_updates({"a": None}, {"a.b": 1})


@pytest.mark.parametrize("bad", [None, [("a", 1)], "a=1"])
def test_updates_must_be_a_mapping(bad):
    with pytest.raises(SessionValueError):
        apply_updates({}, bad)


def test_document_must_be_a_mapping():
    with pytest.raises(SessionValueError):
        apply_updates([], {"a": 1})


def test_the_two_phases_of_an_update_are_public_and_make_what_apply_updates_makes():
    from pytest_sessionstate.dotpath import apply_parsed, parse_updates

    document = {"a": {"b": 1}, "keep": [1]}
    parsed = parse_updates({"a.c": 2, ("x", "y.z"): 3})

    assert parsed == [(("a", "c"), 2), (("x", "y.z"), 3)]
    result = apply_parsed(document, parsed)
    assert result == apply_updates(document, {"a.c": 2, ("x", "y.z"): 3})
    assert result == {"a": {"b": 1, "c": 2}, "keep": [1], "x": {"y.z": 3}}
    assert document == {"a": {"b": 1}, "keep": [1]}  # never mutated
    assert result["keep"] is document["keep"]  # what is not on a path is shared
    with pytest.raises(SessionValueError, match="updates must be a mapping"):
        parse_updates([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(SessionValueError):
        parse_updates({"a..b": 1})
