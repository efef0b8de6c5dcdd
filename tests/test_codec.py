"""The strict JSON codec: only JSON in, only RFC 8259 objects out."""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import json
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_sessionstate import SessionCorruptError, SessionValueError
from pytest_sessionstate.codec import MAX_DEPTH, decode, encode, find_invalid

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=6)


@settings(max_examples=150, deadline=None)
@given(json_objects)
def test_encode_decode_round_trip_and_stdlib_reads_it_back(document):
    data = encode(document)
    assert decode(data) == document
    assert json.loads(data.decode("utf-8")) == document
    assert find_invalid(document) is None


def test_output_is_indented_utf8_with_final_newline():
    data = encode({"name": "caf\u00e9 \u2603", "nested": {"a": [1, 2]}})
    assert data.endswith(b"\n")
    assert data.startswith(b'{\n  "')
    assert b'\n    "a": [\n      1,' in data
    assert "caf\u00e9 \u2603".encode() in data  # raw UTF-8, not \\u escapes
    data.decode("utf-8")


def test_tuples_are_arrays_and_big_ints_stay_exact():
    huge = 2**70 + 1
    document = {"t": (1, (2, 3)), "big": huge, "neg": -(2**80)}
    back = decode(encode(document))
    assert back == {"t": [1, [2, 3]], "big": huge, "neg": -(2**80)}
    assert isinstance(back["big"], int)


def _nested(depth: int) -> dict:
    """A document ``depth`` containers deep (the top object is level 1)."""
    document: dict = {}
    node = document
    for _ in range(depth - 1):
        node["k"] = {}
        node = node["k"]
    return document


def test_nesting_up_to_the_depth_limit_round_trips():
    document = _nested(MAX_DEPTH)
    assert decode(encode(document)) == document


def test_nesting_beyond_the_depth_limit_is_refused_naming_the_path():
    with pytest.raises(SessionValueError, match="depth limit") as info:
        encode(_nested(MAX_DEPTH + 1))
    assert info.value.details["path"] == "['k']" * MAX_DEPTH  # the 201st container


def test_absurd_nesting_is_a_value_error_not_a_crash():
    value: list = []
    for _ in range(100_000):
        value = [value]
    with pytest.raises(SessionValueError):
        encode({"deep": value})


class Thing:
    pass


class Color(enum.Enum):
    RED = 1


NON_JSON = [
    ({"s": {1, 2}}, "['s']"),
    ({"fs": frozenset()}, "['fs']"),
    ({"b": b"bytes"}, "['b']"),
    ({"ba": bytearray(b"x")}, "['ba']"),
    ({"o": Thing()}, "['o']"),
    ({"d": datetime.datetime(2024, 1, 1)}, "['d']"),
    ({"day": datetime.date(2024, 1, 1)}, "['day']"),
    ({"u": uuid.UUID(int=1)}, "['u']"),
    ({"dec": decimal.Decimal("1.5")}, "['dec']"),
    ({"e": Color.RED}, "['e']"),
    ({"c": 1j}, "['c']"),
    ({"n": float("nan")}, "['n']"),
    ({"i": float("inf")}, "['i']"),
    ({"m": float("-inf")}, "['m']"),
    ({"deep": {"x": [0, 1, {"when": datetime.time(1)}]}}, "['deep']['x'][2]['when']"),
    ({"items": [1, 2, 3, float("nan")]}, "['items'][3]"),
    ({"k": {1: "int key"}}, "['k']"),
    ({"k": {None: "none key"}}, "['k']"),
    ({"k": {("a",): "tuple key"}}, "['k']"),
    ({"k": {b"a": "bytes key"}}, "['k']"),
    ({"f": len}, "['f']"),
    ({"t": type}, "['t']"),
]


@pytest.mark.parametrize(("document", "where"), NON_JSON)
def test_non_json_is_refused_naming_the_path(document, where):
    found = find_invalid(document)
    assert found is not None
    assert found[0] == where
    with pytest.raises(SessionValueError) as info:
        encode(document)
    assert info.value.details["path"] == where
    assert where in str(info.value)


def test_int_key_at_top_level_is_refused():
    with pytest.raises(SessionValueError, match="key 1"):
        encode({1: "x"})


def test_circular_reference_is_refused():
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(SessionValueError, match="circular"):
        encode({"loop": loop})


@pytest.mark.parametrize("document", [[], [1], "s", 1, None, (), collections.UserDict()])
def test_top_level_must_be_an_object(document):
    with pytest.raises(SessionValueError, match="object"):
        encode(document)


def test_no_silent_str_conversion():
    # The original wrote datetimes as strings (default=str); make sure we never do.
    with pytest.raises(SessionValueError):
        encode({"when": datetime.datetime(2024, 5, 1, 12, 0)})


CORRUPT = [
    b"",
    b" \n",
    b'{"a": 1',
    b'{"a": [1, 2}',
    b'{"a": "\xff\xfe"}',
    b"\xff\xfe{\x00}\x00",
    b"[1, 2]",
    b'"text"',
    b"42",
    b"null",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": -Infinity}',
    b"NaN",
    b'{"a": 1} trailing',
    b"{'a': 1}",
]


@pytest.mark.parametrize("data", CORRUPT)
def test_corrupt_bytes_raise_session_corrupt_error(data):
    with pytest.raises(SessionCorruptError) as info:
        decode(data, source="s/f.json")
    assert "s/f.json" in str(info.value)
    assert info.value.details["source"] == "s/f.json"
    assert info.value.details["size"] == len(data)


def test_decode_accepts_big_ints_exactly():
    assert decode(b'{"n": 123456789012345678901234567890}') == {"n": 123456789012345678901234567890}
