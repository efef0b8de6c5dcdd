"""What is validated is what is written: the codec under attack by lying objects.

Every case here broke on the codec before issue #12: a validation pass walked
values through ``items()``/``__iter__`` and orjson encoded their real storage,
so the two could differ.  Now no method of a user's object decides what is
stored: a non-JSON value is refused with its path and nothing is written, or
the object's real storage is stored.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import sys
import threading
import uuid

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_sessionstate import SessionCorruptError, SessionValueError, Settings, StateManager
from pytest_sessionstate.codec import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    decode,
    encode,
    find_invalid,
    normalize,
)
from pytest_sessionstate.dotpath import normalize as normalize_path


@pytest.fixture
def manager(tmp_path):
    sm = StateManager("s1", settings=Settings(tmp_path, durable=False))
    sm.write_json("doc.json", {"keep": 1})
    return sm


def _file(manager: StateManager) -> bytes:
    return (manager.session_dir / "doc.json").read_bytes()


def refused_everywhere(manager: StateManager, make, where: str) -> None:
    """``make()`` builds a bad value: write_json, update_json and transaction all
    refuse it with ``where`` (relative to the value) in the error; nothing is written."""
    before = _file(manager)
    with pytest.raises(SessionValueError) as info:
        manager.write_json("doc.json", {"v": make()})
    assert info.value.details["path"] == "['v']" + where
    with pytest.raises(SessionValueError) as info:
        manager.update_json("doc.json", {"a.v": make()})
    assert info.value.details["path"] == "['a']['v']" + where
    with pytest.raises(SessionValueError) as info, manager.transaction("doc.json") as doc:
        doc["v"] = make()
    assert info.value.details["path"] == "['v']" + where
    assert _file(manager) == before
    assert manager.list_files() == ["doc.json"]


# -- containers whose methods lie ----------------------------------------------------


class HidingDict(dict):
    """Shows only its JSON items; holds more."""

    def items(self):
        return iter([(k, v) for k, v in dict.items(self) if k == "shown"])

    def keys(self):
        return iter(["shown"])

    def __iter__(self):
        return iter(["shown"])

    def __len__(self):
        return 1


class HidingList(list):
    """Iterates as ``[1]``; holds more."""

    def __iter__(self):
        return iter([1])

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return 1


@pytest.mark.parametrize(
    ("hidden", "problem"),
    [
        (datetime.datetime(2024, 1, 1), "datetime"),
        (math.nan, "nan"),
        (math.inf, "inf"),
        ({1, 2}, "set"),
        (b"raw", "bytes"),
    ],
)
def test_a_dict_subclass_whose_items_lie_is_judged_on_what_it_holds(manager, hidden, problem):
    refused_everywhere(manager, lambda: HidingDict(shown=1, hidden=hidden), "['hidden']")


@pytest.mark.parametrize("hidden", [datetime.date(2024, 1, 1), math.nan, -math.inf, uuid.uuid4()])
def test_a_list_subclass_whose_iter_lies_is_judged_on_what_it_holds(manager, hidden):
    refused_everywhere(manager, lambda: HidingList([1, hidden]), "[1]")


def test_a_lying_container_that_holds_json_is_stored_as_what_it_holds(manager):
    manager.write_json(
        "doc.json", {"d": HidingDict(shown=1, other=[2]), "l": HidingList([1, 2, 3])}
    )
    assert manager.read_json("doc.json") == {"d": {"shown": 1, "other": [2]}, "l": [1, 2, 3]}


class Trap:
    """Records any call of the methods a walker might use, and mutates a victim."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.victim: dict = {}


def trapping_dict(trap: Trap) -> type[dict]:
    class Mutating(dict):
        def items(self):
            trap.calls.append("items")
            trap.victim["late"] = math.nan  # a NaN appears while it is encoded
            return dict.items(self)

        def __iter__(self):
            trap.calls.append("__iter__")
            trap.victim["late"] = math.nan
            return dict.__iter__(self)

        def keys(self):
            trap.calls.append("keys")
            return dict.keys(self)

    return Mutating


def test_a_mapping_that_mutates_while_encoded_is_never_asked(manager):
    trap = Trap()
    document = {"a": 1}
    trap.victim = document
    document["m"] = trapping_dict(trap)(x=1)
    manager.write_json("doc.json", document)
    assert trap.calls == []  # nothing of the subclass ran: the storage was read
    assert manager.read_json("doc.json") == {"a": 1, "m": {"x": 1}}


def test_a_list_that_mutates_its_parent_while_encoded_is_never_asked(manager):
    calls = []
    document: dict = {}

    class Sneaky(list):
        def __iter__(self):
            calls.append("__iter__")
            document["late"] = datetime.datetime.now()
            return list.__iter__(self)

    document["l"] = Sneaky([1, 2])
    with manager.transaction("doc.json") as doc:
        doc.update(document)
    assert calls == []
    assert manager.read_json("doc.json") == {"keep": 1, "l": [1, 2]}


# -- keys with their own hash, eq, str ----------------------------------------------


class Chameleon(str):
    """A key that claims to be something else."""

    def __hash__(self):
        return 42

    def __eq__(self, other):
        return False

    def __str__(self):
        return ".lock"

    def __repr__(self):
        return "'other'"


def test_a_str_subclass_key_equal_to_another_key_is_a_duplicate_refused(manager):
    # Before: {Chameleon("a"): 1, "a": 2} wrote a document with the key "a" twice.
    refused_everywhere(manager, lambda: {Chameleon("a"): 1, "a": 2}, "")
    with pytest.raises(SessionValueError, match="duplicate key 'a'"):
        encode({Chameleon("a"): 1, "a": 2})


def test_a_str_subclass_key_is_stored_as_its_characters(manager):
    manager.write_json("doc.json", {Chameleon("name"): Chameleon("value")})
    raw = _file(manager)
    assert json.loads(raw) == {"name": "value"}
    assert b".lock" not in raw
    assert b"other" not in raw
    back = manager.read_json("doc.json")
    assert [type(k) for k in back] == [str]
    assert type(back["name"]) is str


def test_a_str_subclass_update_path_names_its_characters(manager):
    class Liar(str):
        def split(self, *args, **kwargs):
            return ["..", "escape"]

        def __contains__(self, item):
            return False

        def __iter__(self):
            return iter("x")

    segments = normalize_path(Liar("a.b"))
    assert segments == ("a", "b")
    assert all(type(s) is str for s in segments)
    manager.update_json("doc.json", {Liar("a.b"): 1, (Chameleon("c"), "d"): 2})
    assert manager.read_json("doc.json") == {"keep": 1, "a": {"b": 1}, "c": {"d": 2}}


def test_a_tuple_subclass_path_is_read_from_its_storage():
    class Lying(tuple):
        def __iter__(self):
            return iter(["x"])

        def __len__(self):
            return 1

    assert normalize_path(Lying(("a", "b"))) == ("a", "b")


# -- scalars hidden in subclasses and in types orjson writes natively ---------------


class LyingFloat(float):
    def __float__(self):
        return 1.0

    def __repr__(self):
        return "1.0"


class LyingInt(int):
    def __int__(self):
        return 0

    def __index__(self):
        return 0

    def __repr__(self):
        return "0"


def test_nan_hidden_in_a_float_subclass_is_refused(manager):
    refused_everywhere(manager, lambda: [LyingFloat("nan")], "[0]")


def test_numbers_in_subclasses_are_stored_as_their_value(manager):
    manager.write_json("doc.json", {"f": LyingFloat(2.5), "i": LyingInt(7)})
    assert manager.read_json("doc.json") == {"f": 2.5, "i": 7}


class Color(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "make",
    [
        lambda: Color.RED,  # orjson writes enums natively
        lambda: uuid.UUID(int=1),  # and UUIDs
        lambda: orjson.Fragment(b"[NaN]"),  # and raw fragments, even invalid JSON
        lambda: Point(1),
        lambda: datetime.time(1),
    ],
    ids=["enum", "uuid", "fragment", "dataclass", "time"],
)
def test_types_orjson_writes_natively_are_refused(manager, make):
    refused_everywhere(manager, make, "")


def test_an_int_enum_is_stored_as_the_int_it_is(manager):
    manager.write_json("doc.json", {"level": Level.HIGH})
    assert manager.read_json("doc.json") == {"level": 3}


# -- integers, surrogates, depth ----------------------------------------------------


def test_integers_beyond_64_bits_are_stored_exactly(manager):
    values = [2**63, -(2**63) - 1, 2**64, 10**100, -(10**4299)]
    manager.write_json("doc.json", {"n": values})
    assert manager.read_json("doc.json") == {"n": values}
    manager.update_json("doc.json", {"m": 10**50})
    assert manager.read_json("doc.json")["m"] == 10**50


def test_an_integer_over_the_digit_limit_is_refused_with_its_path(manager):
    # Before: refused with path <document> (the stdlib encoder's ValueError).
    refused_everywhere(manager, lambda: {"x": [10**MAX_INT_DIGITS]}, "['x'][0]")
    assert len(str(10**MAX_INT_DIGITS - 1)) == MAX_INT_DIGITS
    assert decode(encode({"n": 10**MAX_INT_DIGITS - 1})) == {"n": 10**MAX_INT_DIGITS - 1}


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udc80" * 3])
def test_a_lone_surrogate_is_refused_with_its_path(manager, text):
    # Before: refused with path <document> (orjson's TypeError, whole document).
    refused_everywhere(manager, lambda: {"x": ["ok", text]}, "['x'][1]")
    refused_everywhere(manager, lambda: {text: 1}, "")


def _deep(depth: int) -> dict:
    document: dict = {}
    node = document
    for _ in range(depth - 1):
        node["k"] = node = {}
    return document


def _on_a_deep_stack(fn, frames: int = 150):
    """Call ``fn`` with ``frames`` more frames on the stack than now."""

    def down(n: int):
        return fn() if n == 0 else down(n - 1)

    return down(frames)


def test_every_accepted_depth_reads_back_from_a_deep_stack(manager):
    document = _deep(MAX_DEPTH)
    manager.write_json("doc.json", document)
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back
    room = sys.getrecursionlimit() - depth - 20
    assert _on_a_deep_stack(lambda: manager.read_json("doc.json"), room) == document
    assert _on_a_deep_stack(lambda: manager.update_json("doc.json", {"x": 1}), room)["x"] == 1


def test_a_deep_file_with_big_integers_reads_from_a_deep_stack(manager):
    # The standard decoder (needed for integers beyond 64 bits) recurses per level.
    document = _deep(MAX_DEPTH)
    document["big"] = 2**70
    manager.write_json("doc.json", document)
    depth = len(__import__("inspect").stack(0))
    room = sys.getrecursionlimit() - depth - 60  # starting a thread takes a few frames
    assert _on_a_deep_stack(lambda: manager.read_json("doc.json"), room) == document


def test_deeper_documents_are_refused_at_write_naming_the_path(manager):
    before = _file(manager)
    with pytest.raises(SessionValueError, match="depth limit") as info:
        manager.write_json("doc.json", _deep(MAX_DEPTH + 1))
    assert info.value.details["path"] == "['k']" * MAX_DEPTH
    with pytest.raises(SessionValueError, match="depth limit"):
        manager.update_json("doc.json", {("k",) * MAX_DEPTH: {}})
    assert _file(manager) == before
    manager.update_json("doc.json", {("k",) * MAX_DEPTH: 1})  # a scalar fits
    manager.update_json("doc.json", {("j",) * (MAX_DEPTH - 1): {}})  # so does an empty object
    assert _file(manager) != before


def test_transaction_default_too_deep_is_a_value_error_not_recursion(manager):
    # Before: copy.deepcopy raised a raw RecursionError.
    value: list = []
    for _ in range(10_000):
        value = [value]
    with (
        pytest.raises(SessionValueError, match="depth limit"),
        manager.transaction("new.json", default={"deep": value}),
    ):
        pytest.fail("the block must not run")
    assert not manager.exists("new.json")


def test_transaction_default_is_an_exact_copy(manager):
    default = {"d": HidingDict(shown=1), "t": (1, 2), "s": Chameleon("x")}
    with manager.transaction("new.json", default=default) as doc:
        assert doc == {"d": {"shown": 1}, "t": [1, 2], "s": "x"}
        assert type(doc["d"]) is dict
        assert type(doc["s"]) is str
        doc["d"]["more"] = 2
    assert dict.items(default["d"])
    assert "more" not in dict.keys(default["d"])


def test_circular_and_absurd_nesting_are_value_errors(manager):
    loop: list = []
    loop.append(loop)
    with pytest.raises(SessionValueError, match="circular"):
        manager.write_json("doc.json", {"loop": loop})
    assert find_invalid({"loop": loop}) == ("['loop'][0]", "circular reference")


# -- reading: whatever read_json returns can be written back -------------------------


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"v": 1e400}', "1e400"),
        (b'{"v": -1E+999}', r"-1E\+999"),
        (b'{"v": "\\ud800"}', "surrogate"),
        (b'{"\\udfff": 1}', "surrogate"),
        (b'{"v": ' + b"9" * (MAX_INT_DIGITS + 1) + b"}", "digits"),
        (b'{"v": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", "depth limit"),
        (b"[" * 2000 + b"]" * 2000, "depth"),
    ],
    ids=["1e400", "-1e999", "surrogate", "surrogate-key", "huge-int", "too-deep", "absurd"],
)
def test_a_file_that_could_not_be_written_back_is_corrupt(manager, data, problem):
    (manager.session_dir / "doc.json").write_bytes(data)
    with pytest.raises(SessionCorruptError, match=problem):
        manager.read_json("doc.json")
    with pytest.raises(SessionCorruptError):
        manager.update_json("doc.json", {"x": 1})
    assert _file(manager) == data


def test_the_depth_limit_reads_in_full():
    data = b'{"v": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert encode(decode(data)) == encode(json.loads(data))


def test_what_is_read_is_fresh_and_exact(manager):
    manager.write_json("doc.json", {"a": {"b": [1, 2**70, "x"]}})
    one, two = manager.read_json("doc.json"), manager.read_json("doc.json")
    assert one == two
    assert one is not two
    assert one["a"] is not two["a"]
    one["a"]["b"].append(3)
    assert manager.read_json("doc.json") == {"a": {"b": [1, 2**70, "x"]}}


def test_the_standard_decoder_runs_on_a_fresh_thread_only_when_needed(manager):
    manager.write_json("doc.json", {"n": 2**70})
    before = threading.active_count()
    assert manager.read_json("doc.json") == {"n": 2**70}
    assert threading.active_count() == before


# -- property tests: a subclass zoo, and the differential fuzz against the stdlib ----

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63, max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=25,
)


class ZooDict(dict):
    def items(self):
        return iter([])


class ZooList(list):
    def __iter__(self):
        return iter([])


class ZooStr(str):
    def __str__(self):
        return "lie"


class ZooInt(int):
    def __repr__(self):
        return "0"


def disguise(value, draw):
    """The same JSON value, with containers and scalars in lying subclasses."""
    if type(value) is dict:
        items = {disguise(k, draw) if draw() else k: disguise(v, draw) for k, v in value.items()}
        return ZooDict(items) if draw() else items
    if type(value) is list:
        items = [disguise(v, draw) for v in value]
        return ZooList(items) if draw() else (tuple(items) if draw() else items)
    if type(value) is str and draw():
        return ZooStr(value)
    if type(value) is int and draw():
        return ZooInt(value)
    return value


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), json_values, max_size=5), st.randoms(use_true_random=False))
def test_a_subclass_zoo_is_stored_as_what_it_holds(document, rnd):
    disguised = disguise(document, lambda: rnd.random() < 0.5)
    data = encode(disguised)
    assert decode(data) == document
    assert json.loads(data) == document
    assert normalize(disguised) == document


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(), json_values, max_size=5),
    st.sampled_from([None, 0, 1, 2]),
    st.sampled_from([(",", ":"), (", ", ": ")]),
    st.booleans(),
)
def test_decode_agrees_with_the_standard_library(document, indent, separators, ascii_only):
    text = json.dumps(document, indent=indent, separators=separators, ensure_ascii=ascii_only)
    data = text.encode("utf-8")
    assert decode(data) == json.loads(text) == document
    assert decode(encode(decode(data))) == document  # what is read can be written back


def _strict_stdlib(data: bytes):
    def refuse(token):
        raise ValueError(token)

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mangled_bytes_are_read_as_the_stdlib_reads_them_or_refused(data):
    document = data.draw(st.dictionaries(st.text(max_size=4), json_values, max_size=3))
    raw = bytearray(json.dumps(document, ensure_ascii=data.draw(st.booleans())).encode())
    for _ in range(data.draw(st.integers(0, 3))):
        if raw:
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at : at + 1] = data.draw(
                st.sampled_from([b"", b"[", b"]", b"{", b"}", b",", b'"', b"\\", b"1e999", b"\xff"])
                | st.binary(max_size=2)
            )
    raw = bytes(raw)
    try:
        expected = _strict_stdlib(raw)
    except (ValueError, RecursionError):
        with pytest.raises(SessionCorruptError):
            decode(raw)
        return
    try:
        got = decode(raw)
    except SessionCorruptError:
        # refused only for what could not be written back, or for not an object
        assert type(expected) is not dict or find_invalid(expected) is not None
        return
    assert got == expected
    assert decode(encode(got)) == got


# -- large documents: the sampled scan, the wrapped depth check, the paused collector --


def _large(extra: dict, *, pad: int = 0) -> dict:
    """A document of about 100 KB (above the size where decoding samples the bytes),
    with ``extra`` at the end, shifted by ``pad`` bytes.  No other digits: the
    sample of the bytes must find the number itself, not a neighbour."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    names = [a + b + c for a in letters for b in letters for c in letters[:4]]
    document: dict = {"tasks": {f"t{n}": {"ok": True, "by": f"w{n[0]}"} for n in names}}
    document["pad"] = "x" * pad
    document.update(extra)
    return document


@pytest.mark.parametrize("pad", range(9))  # every alignment against the sampling stride
@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**19, 12345678901234567890123])
def test_a_big_integer_in_a_large_document_reads_exactly_at_every_alignment(value, pad):
    document = _large({"n": value}, pad=pad)
    data = json.dumps(document, indent=2).encode()
    assert len(data) > 64 * 1024
    assert decode(data) == document
    assert type(decode(data)["n"]) is int


@pytest.mark.parametrize("pad", range(9))
def test_long_digit_runs_that_are_not_big_integers_read_as_themselves(pad):
    document = _large({"s": "1" * 40, "f": 1.2345678901234567, "i": 1234567890123456789}, pad=pad)
    data = json.dumps(document).encode()
    assert decode(data) == document


def test_an_integer_over_the_digit_limit_in_a_large_file_is_corrupt():
    data = json.dumps(_large({})).encode()[:-1] + b', "n": ' + b"7" * (MAX_INT_DIGITS + 1) + b"}"
    with pytest.raises(SessionCorruptError, match="digits"):
        decode(data)


def test_a_large_file_nested_too_deeply_is_corrupt():
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH  # one level below the top object: too deep
    data = json.dumps(_large({})).encode()[:-1] + f', "d": {deep}}}'.encode()
    with pytest.raises(SessionCorruptError, match="nested deeper"):
        decode(data)
    fits = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert decode(json.dumps(_large({})).encode()[:-1] + f', "d": {fits}}}'.encode())["d"]


@pytest.mark.parametrize("enabled", [True, False])
def test_decoding_a_large_document_leaves_the_collector_as_it_found_it(enabled):
    import gc

    data = json.dumps(_large({})).encode()
    bad = data[:-1] + b', "x": NaN}'
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        assert decode(data)["tasks"]["tabc"] == {"ok": True, "by": "wa"}
        assert gc.isenabled() is enabled
        with pytest.raises(SessionCorruptError):
            decode(bad)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


@pytest.mark.parametrize(
    "make",
    [
        lambda: math.nan,
        lambda: -math.inf,
        lambda: Color.RED,
        lambda: uuid.UUID(int=1),
        lambda: orjson.Fragment(b"1"),
        lambda: datetime.datetime(2024, 1, 1),
        lambda: {1: "int key"},
        lambda: HidingDict(shown=1, hidden=math.nan),
    ],
    ids=["nan", "-inf", "enum", "uuid", "fragment", "datetime", "int-key", "lying-dict"],
)
def test_a_bad_value_deep_in_a_large_transaction_is_refused(tmp_path, make):
    sm = StateManager("big", settings=Settings(tmp_path, durable=False))
    sm.write_json("doc.json", _large({}))
    before = (sm.session_dir / "doc.json").read_bytes()
    with pytest.raises(SessionValueError) as info, sm.transaction("doc.json") as doc:
        doc["tasks"]["txyc"]["by"] = make()
    assert info.value.details["path"].startswith("['tasks']['txyc']['by']")
    assert (sm.session_dir / "doc.json").read_bytes() == before
