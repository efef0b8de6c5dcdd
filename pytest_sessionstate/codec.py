"""Strict JSON: what may be stored, and how it is encoded and decoded.

Only JSON goes in and comes out: objects with ``str`` keys, arrays (lists or
tuples), strings, integers, finite floats, booleans and ``None``, nested at most
:data:`MAX_DEPTH` containers deep, integers of at most :data:`MAX_INT_DIGITS`
digits, strings without lone surrogates.  Anything else is refused with the path
of the offending value, instead of being turned silently into a string (as
``default=str`` did) or written as invalid JSON (``NaN``, ``Infinity``).
Decoding follows RFC 8259 (UTF-8 only, no ``NaN`` or ``Infinity`` tokens, a
session file holds an object) and refuses what could not be written back
(``1e400``, lone surrogates, documents nested too deeply): whatever
:func:`decode` returns, :func:`encode` accepts unchanged.

**What is validated is what is written.**  No method of a user's object is
ever called: not ``items()``, ``__iter__``, ``__hash__``, ``__eq__`` nor
``__str__``.  A document of exact built-in types takes the fast path: a census
of every value's type at C speed (:func:`gc.get_referents`, level by level,
which reads the containers' real storage), then orjson, which reads the same
storage and sends anything that is not an exact built-in type (subclasses,
datetimes, dataclasses...) to a ``default`` that refuses it.  Anything else
takes the exact path: :func:`normalize` copies the value into exact
``dict``/``list``/``str``/``int``/``float`` objects, reading subclasses through
the base type's own C methods (so a ``dict`` subclass whose ``items()`` lies is
stored as what it holds), refusing what is not JSON with its path, and the copy
is what gets encoded.

A document must not be changed by another thread while it is being encoded
(as for :mod:`json`): the census and the encoder read it one after the other.
"""

from __future__ import annotations

import gc
import json
import math
import threading
from collections.abc import Callable
from itertools import compress
from typing import Any

import orjson

from .errors import SessionCorruptError, SessionValueError

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "decode",
    "decode_checked",
    "encode",
    "find_invalid",
    "normalize",
]

#: The deepest nesting of objects and arrays a document may have; the top-level
#: object is level 1, so ``{"a": [{}]}`` is 3 deep.  Deeper documents are refused
#: when written and reported as corrupt when read, so every stored document reads
#: back from any stack depth and is written back unchanged.
MAX_DEPTH = 200

#: The most digits an integer may have (Python's default ``int_max_str_digits``);
#: larger integers are refused when written and reported as corrupt when read.
MAX_INT_DIGITS = 4300

# -- the exact path: normalize ------------------------------------------------------

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1  # orjson writes integers in [_INT64_MIN, _UINT64_MAX]
# An integer of at most MAX_INT_DIGITS digits is below 10**MAX_INT_DIGITS.
_MAX_INT_BITS = int(MAX_INT_DIGITS * math.log2(10)) + 1

_NoneType = type(None)


class _Invalid(Exception):
    """Internal: the first value that is not JSON, where it is and what is wrong."""

    def __init__(self, parts: list[str], problem: str) -> None:
        super().__init__(problem)
        self.where = _describe(parts)
        self.problem = problem


def _describe(parts: list[str]) -> str:
    return "".join(parts) or "<document>"


def _shown(value: object) -> str:
    """A short repr that runs no user code (only built-in reprs are trusted)."""
    if type(value) in (str, int, float, bool, bytes, _NoneType):
        text = repr(value) if type(value) is not int or value.bit_length() < 200 else "<int>"
        return text if len(text) <= 60 else text[:57] + "..."
    return f"<{type(value).__name__} object>"


def _exact_str(value: str, parts: list[str], what: str) -> str:
    text = value if type(value) is str else str.__str__(value)  # the stored characters
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _Invalid(
                parts,
                f"{what} holds a lone surrogate ({text[exc.start]!r} at index {exc.start}), "
                "which UTF-8 cannot encode",
            ) from None
    return text


def _exact_int(value: int, parts: list[str]) -> tuple[int, bool]:
    """The integer, and whether it lies outside 64 bits (orjson cannot write it)."""
    if type(value) is not int:
        value = int.__int__(value)  # the stored value, whatever __int__/__index__ say
    if _INT64_MIN <= value <= _UINT64_MAX:
        return value, False
    problem = f"an integer of more than {MAX_INT_DIGITS:,} digits is not stored"
    if value.bit_length() > _MAX_INT_BITS:
        raise _Invalid(parts, problem)
    try:
        digits = len(int.__repr__(value)) - (value < 0)
    except ValueError:  # the interpreter's own int_max_str_digits is lower
        raise _Invalid(parts, problem + " (nor beyond sys.get_int_max_str_digits())") from None
    if digits > MAX_INT_DIGITS:
        raise _Invalid(parts, problem)
    return value, True


def _exact_float(value: float, parts: list[str]) -> float:
    if type(value) is not float:
        value = float.__float__(value)  # the stored value
    if value - value != 0.0:  # inf - inf and nan - nan are nan
        raise _Invalid(parts, f"{value!r} is not a finite number (JSON has no NaN or Infinity)")
    return value


def _container_items(value: Any, kind: type) -> tuple[list[Any], bool] | None:
    """A snapshot of a container's stored items, read by the base type's C code.

    ``(items, is_object)``, or None if ``value`` is no JSON container.
    """
    if kind is dict or issubclass(kind, dict):
        return list(dict.items(value)), True
    if kind is list or issubclass(kind, list):
        return list.copy(value), False
    if kind is tuple or issubclass(kind, tuple):
        return list(tuple.__iter__(value)), False
    return None


def _normalize(value: Any, parts: list[str], depth: int) -> tuple[Any, bool]:
    """Copy ``value`` into exact JSON types; ``(copy, has_big_ints)``.

    :param parts: the path of ``value`` (extended in place while walking).
    :param depth: how many containers hold ``value``.
    :raises _Invalid: for the first value that is not JSON.

    Iterative (a deep value cannot exhaust the stack); a container is read once,
    into a snapshot, so a value that changes while being walked cannot make the
    copy differ from what was checked.
    """
    big = False
    result, frame = _open(value, parts, depth, set())
    if frame is None:
        return result, _is_big(result)
    active: set[int] = {frame[4]}
    stack = [frame]
    while stack:
        items, index, target, is_object, _ident, base = stack[-1]
        if index == len(items):
            stack.pop()
            active.discard(_ident)
            if base >= 0:
                del parts[base:]
            continue
        stack[-1][1] = index + 1
        mark = len(parts)
        if is_object:
            key, item = items[index]
            if type(key) is not str and not issubclass(type(key), str):
                raise _Invalid(
                    parts,
                    f"key {_shown(key)} is of type {type(key).__name__}; JSON keys must be str",
                )
            key = _exact_str(key, parts, f"key {_shown(key)}")
            if key in target:
                raise _Invalid(
                    parts,
                    f"duplicate key {key!r}: two keys of this object are the same string "
                    "(a str subclass with its own __eq__ or __hash__)",
                )
            parts.append(f"[{key!r}]")
        else:
            item = items[index]
            parts.append(f"[{index}]")
        copied, child = _open(item, parts, len(stack) + depth, active)
        if child is None:
            if not big and type(copied) is int:
                big = _is_big(copied)
            del parts[mark:]
        else:
            active.add(child[4])
            child[5] = mark
            stack.append(child)
        if is_object:
            target[key] = copied
        else:
            target.append(copied)
    return result, big


def _is_big(value: Any) -> bool:
    return type(value) is int and not _INT64_MIN <= value <= _UINT64_MAX


def _open(
    value: Any, parts: list[str], depth: int, active: set[int]
) -> tuple[Any, list[Any] | None]:
    """A scalar's exact copy and None, or an empty container and its walk frame."""
    kind = type(value)
    if kind is str:
        return _exact_str(value, parts, "the string"), None
    if kind is bool or value is None:
        return value, None
    if kind is int:
        return _exact_int(value, parts)[0], None
    if kind is float:
        return _exact_float(value, parts), None
    found = _container_items(value, kind)
    if found is not None:
        if id(value) in active:
            raise _Invalid(parts, "circular reference")
        if depth >= MAX_DEPTH:
            raise _Invalid(parts, f"nested deeper than {MAX_DEPTH} levels (the depth limit)")
        items, is_object = found
        target: Any = {} if is_object else []
        return target, [items, 0, target, is_object, id(value), -1]
    if issubclass(kind, str):
        return _exact_str(value, parts, "the string"), None
    if issubclass(kind, int):  # bool cannot be subclassed: an int subclass (IntEnum...)
        return _exact_int(value, parts)[0], None
    if issubclass(kind, float):
        return _exact_float(value, parts), None
    raise _Invalid(parts, f"{kind.__name__} is not a JSON type")


def _invalid(where: str, problem: str) -> SessionValueError:
    return SessionValueError(
        f"not JSON at {where}: {problem}", details={"path": where, "problem": problem}
    )


def normalize(value: Any, *, at: tuple[str, ...] = ()) -> Any:
    """Return an exact copy of a JSON value, made of plain built-in types only.

    Subclasses of ``dict``, ``list``, ``tuple``, ``str``, ``int`` and ``float``
    are copied from what they store (their own methods are never called), tuples
    become lists.  The copy shares nothing with ``value``.

    :param at: the segments of the dot path the value is to be stored at: they
        prefix the path in errors and count towards the depth limit.
    :raises SessionValueError: naming the path of the first value that is not
        JSON (or is a container nested deeper than :data:`MAX_DEPTH`).
    """
    parts = [f"[{segment!r}]" for segment in at]
    try:
        if len(at) > MAX_DEPTH:
            raise _Invalid(parts, f"nested deeper than {MAX_DEPTH} levels (the depth limit)")
        return _normalize(value, parts, len(at))[0]
    except _Invalid as exc:
        raise _invalid(exc.where, exc.problem) from None


def find_invalid(value: Any) -> tuple[str, str] | None:
    """Return ``(path, problem)`` for the first non-JSON value, or None if all is JSON.

    The path is written like ``["items"][3]["when"]``.
    """
    if type(value) is dict and _census(value):
        try:
            _dump(value)  # the census does not look at keys nor inside strings
            return None
        except TypeError:
            pass
    try:
        _normalize(value, [], 0)
    except _Invalid as exc:
        return exc.where, exc.problem
    return None


# -- the fast path: census + orjson -------------------------------------------------

_JSON_KINDS = frozenset({dict, list, tuple, str, int, float, bool, _NoneType})
_CONTAINER_KINDS = frozenset({dict, list, tuple})
_is_float_kind = frozenset({float}).__contains__
_get_referents = gc.get_referents
_isfinite = math.isfinite
#: How many values the census visits before it leaves the judgement to the exact
#: path: a value shared many times over (a list of the same list, nested) is
#: walked once per occurrence, as the encoder would write it.
_CENSUS_BUDGET = 50_000_000


def _census_walk(document: dict[str, Any]) -> bool:
    level: list[Any] = [document]
    depth = 1
    budget = _CENSUS_BUDGET
    while True:
        # The values (and the non-str keys) of the containers of this level, from
        # their storage; non-containers have no referents and drop out.
        refs = _get_referents(*level)
        if not refs:
            return True
        budget -= len(refs)
        if budget < 0:
            return False
        # Hashing a type runs its metaclass's __hash__: user code is possible only
        # for a type outside _JSON_KINDS, and then the census fails whatever it did.
        kinds = set(map(type, refs))
        if not kinds <= _JSON_KINDS:
            return False
        if float in kinds and not all(
            map(_isfinite, compress(refs, map(_is_float_kind, map(type, refs))))
        ):
            return False
        if kinds.isdisjoint(_CONTAINER_KINDS):
            return True
        depth += 1
        if depth > MAX_DEPTH:
            return False  # too deep, or circular
        level = refs


def _census_is_sound() -> bool:
    """Whether :func:`gc.get_referents` shows every value on this interpreter."""
    try:
        good: dict[str, Any] = {"a": [1, "x", None, True, 1.5, {"b": ()}], "c": {}}
        deep: dict[str, Any] = {}
        node = deep
        for _ in range(MAX_DEPTH - 1):
            node["k"] = node = {}
        bad: list[dict[Any, Any]] = [
            {"a": math.nan},
            {"a": [1, (2.0, -math.inf)]},
            {"a": {"b": [{"c": math.inf}]}},
            {1: math.nan},
            {"a": [_NoneType]},
            {"a": bytearray(b"x")},
            {"d": deep},  # one level too deep
        ]
        return _census_walk(good) and _census_walk(deep) and not any(map(_census_walk, bad))
    except Exception:  # pragma: no cover - an interpreter without get_referents
        return False


_CENSUS_SOUND = _census_is_sound()


def _census(document: dict[str, Any]) -> bool:
    """True if every value is an exact JSON type, floats finite, depth within limit.

    Runs no user code when it answers True.  False means "not proven": the exact
    path judges (and names the culprit).
    """
    if not _CENSUS_SOUND:
        return False
    try:
        return _census_walk(document)
    except Exception:  # a metaclass's __hash__ raised: not a JSON type anyway
        return False


def _refuse(value: Any) -> Any:
    """orjson's ``default``: anything it does not write natively is not JSON here."""
    raise TypeError("not JSON")


_OPTIONS = (
    orjson.OPT_INDENT_2
    | orjson.OPT_APPEND_NEWLINE
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
)


def _with_fragments(document: dict[str, Any]) -> dict[str, Any]:
    """A normalized document with its integers beyond 64 bits as orjson Fragments.

    Iterative, like :func:`_normalize`: the caller's stack depth does not matter.
    """
    top: dict[str, Any] = {}
    stack: list[tuple[Any, Any]] = [(document, top)]
    while stack:
        source, target = stack.pop()
        pairs = source.items() if type(source) is dict else enumerate(source)
        for key, item in pairs:
            kind = type(item)
            out: Any = item
            if kind is dict or kind is list:
                out = {} if kind is dict else [None] * len(item)
                stack.append((item, out))
            elif kind is int and _is_big(item):
                out = orjson.Fragment(int.__repr__(item).encode("ascii"))
            target[key] = out  # a list target is pre-sized: same index
    return top


def _dump(document: Any) -> bytes:
    return orjson.dumps(document, default=_refuse, option=_OPTIONS)


def encode(document: Any, *, validated: bool = False) -> bytes:
    """Encode a JSON object as indented UTF-8 with a final newline.

    :param validated: the caller vouches that ``document`` is made of exact JSON
        types only (for example a document from :func:`decode` whose changed
        values came from :func:`normalize`), so the census is skipped: it is the
        costliest step on a large document.  orjson still refuses anything that
        is not an exact built-in type.
    :raises SessionValueError: naming the path of the first value that is not JSON,
        or if ``document`` is not an object.
    """
    kind = type(document)
    if kind is not dict and not issubclass(kind, dict):
        raise _invalid("<document>", f"a session file holds a JSON object, not a {kind.__name__}")
    if kind is dict:
        # orjson first: it runs no user code (anything it does not write natively
        # goes to _refuse), and the census then reads the document warm from the
        # cache instead of from memory (a third of its time on a large document).
        try:
            data = _dump(document)
        except TypeError:
            pass  # a non-str key, a lone surrogate, an integer beyond 64 bits...
        else:
            if validated or _census(document):
                return data
    try:
        copy, big = _normalize(document, [], 0)
    except _Invalid as exc:
        raise _invalid(exc.where, exc.problem) from None
    return _dump(_with_fragments(copy) if big else copy)


# -- decoding -----------------------------------------------------------------------


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON (RFC 8259)")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value - value != 0.0:  # inf - inf is nan
        raise ValueError(f"number {literal[:40]!r} is out of range (it would read as infinity)")
    return value


def _bounded_int(literal: str) -> int:
    if len(literal) - literal.startswith("-") > MAX_INT_DIGITS:
        raise ValueError(f"an integer of more than {MAX_INT_DIGITS:,} digits")
    return int(literal)


# One decoder for every call: ``json.loads(text, parse_constant=...)`` builds a new
# decoder and scanner each time (3 us, a tenth of a small transaction's CPU).
_decode_exact = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float).decode
_decode_exact_bounded = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int
).decode

# orjson accepts nothing that the standard decoder refuses, is twice as fast, and
# refuses more (lone surrogates, numbers that overflow to infinity): but it reads
# an integer beyond 64 bits as a float.  Bytes holding a run of 19 or more digits
# (where such an integer may hide) are decoded again by the standard decoder.
# One pass over the bytes answers both questions: digits become 0 (for the runs)
# and ``{`` becomes ``[`` (one count of the brackets bounds the depth).
_SCAN = bytes.maketrans(b"123456789{", b"000000000[")
_LONG_RUN = 19
_LONG_NUMBER = b"0" * _LONG_RUN
_HUGE_NUMBER = b"0" * (MAX_INT_DIGITS + 1)
# A large document is first sampled every _STRIDE-th byte: a run of _LONG_RUN
# digits covers two consecutive samples, so a sample without two digits in a row
# proves there is no long run, at a ninth of the cost of the full pass.
_STRIDE = (_LONG_RUN - 1) // 2
#: Up to this size a document is scanned whole (counting brackets is cheaper than
#: wrapping and unwrapping); above it, it is sampled and wrapped.
_COUNT_BELOW = 64 * 1024


def _long_numbers(data: bytes, scan: bytes | None) -> tuple[bool, bool]:
    """Whether ``data`` holds a run of 19 digits, and one of more than MAX_INT_DIGITS.

    :param scan: ``data`` through :data:`_SCAN`, if already made.
    """
    if scan is None:
        if len(data) > _COUNT_BELOW and data[::_STRIDE].translate(_SCAN).find(b"00") < 0:
            return False, False
        scan = data.translate(_SCAN)
    if scan.find(_LONG_NUMBER) < 0:
        return False, False
    return True, scan.find(_HUGE_NUMBER) >= 0


def _orjson_depth_limit() -> int:
    """orjson's own limit on nesting when decoding (1024 in orjson 3)."""
    low, high = 1, 1 << 16
    while low < high:  # the largest depth orjson accepts
        mid = (low + high + 1) // 2
        try:
            orjson.loads(b"[" * mid + b"]" * mid)
            low = mid
        except orjson.JSONDecodeError:
            high = mid - 1
    return low


# A document nested deeper than MAX_DEPTH is refused by orjson itself, at C speed,
# when wrapped in (orjson's limit - MAX_DEPTH) arrays.
_WRAP = _orjson_depth_limit() - MAX_DEPTH
_OPEN = b"[" * _WRAP
_CLOSE = b"]" * _WRAP


class _Corrupt(Exception):
    """Internal: the bytes are not a document that could be written back."""


def _unwrap(wrapped: Any) -> Any:
    for _ in range(_WRAP):
        if type(wrapped) is not list or len(wrapped) != 1:
            raise _Corrupt("not one JSON value")
        wrapped = wrapped[0]
    return wrapped


def _decode_orjson(data: bytes) -> tuple[Any, bytes | None]:
    """The document orjson reads, within the depth limit; raises to defer.

    Also the bytes through :data:`_SCAN` if they were made (small documents).
    """
    size = len(data)
    if _WRAP <= 0 or size <= 2 * MAX_DEPTH:  # too short to nest too deeply
        return orjson.loads(data), None
    if size <= _COUNT_BELOW:
        scan = data.translate(_SCAN)
        if scan.count(b"[") <= MAX_DEPTH:
            return orjson.loads(data), scan
    else:
        scan = None
    try:
        wrapped = orjson.loads(b"".join((_OPEN, data, _CLOSE)))  # join: one copy, not two
    except orjson.JSONDecodeError:
        orjson.loads(data)  # raises for bytes that are not JSON at all
        raise _Corrupt(f"nested deeper than {MAX_DEPTH} levels (the depth limit)") from None
    return _unwrap(wrapped), scan


def _in_fresh_thread(decode: Callable[[str], Any], text: str) -> Any:
    """``decode(text)`` on a new thread's empty stack (for a caller deep in its own)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, decode(text)))
        except BaseException as exc:  # handed to the caller
            outcome.append((False, exc))

    worker = threading.Thread(target=run, name="pytest-sessionstate-decode", daemon=True)
    worker.start()
    worker.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _decode_stdlib(data: bytes, *, bounded: bool) -> Any:
    text = data.decode("utf-8")
    if text.startswith("\ufeff"):
        raise ValueError("Unexpected UTF-8 BOM (decode using utf-8-sig)")
    decode = _decode_exact_bounded if bounded else _decode_exact
    try:
        return decode(text)
    except RecursionError:
        # The standard decoder recurses once per level on the caller's stack: a
        # document within the depth limit reads on a fresh one.
        return _in_fresh_thread(decode, text)


def _too_deep_or_unwritable(document: Any) -> None:
    """Raise _Corrupt if a document from the standard decoder could not be written."""
    try:
        _normalize(document, [], 0)
    except _Invalid as exc:
        raise _Corrupt(f"{exc.problem} at {exc.where}") from None


#: From this size on, the cyclic garbage collector is paused while a document is
#: decoded or checked (see :func:`_gc_paused`).
_PAUSE_GC_FROM = 32 * 1024


class _gc_paused:  # lower case: used like a function, as contextlib's helpers are
    """Keep the cyclic garbage collector from running while a large document is built.

    Decoding a document allocates one container per object and array; each
    700 allocations start a collection, and every tenth of those promotes the
    fresh document a generation further, until full collections scan it over
    and over (a fifth of a large read's time).  None of these objects can be
    garbage (they are all reachable from the document being built), so the
    collections find nothing.  Paused, the collector sees the new document
    once, at its next ordinary collection.

    If the collector is already disabled (by the application, or by this
    pause in another thread), it is left as it is.  An application that
    disables it from another thread during the pause finds it enabled again
    afterwards: :mod:`gc` keeps one global switch, not a count.
    """

    __slots__ = ("_resume",)

    def __enter__(self) -> None:
        self._resume = gc.isenabled()
        if self._resume:
            gc.disable()

    def __exit__(self, *exc_info: object) -> None:
        if self._resume:
            gc.enable()


def decode(data: bytes, *, source: str = "<data>") -> dict[str, Any]:
    """Decode a session file's bytes into a fresh JSON object of exact types.

    :param source: names the file in the error message.
    :raises SessionCorruptError: if the bytes are not UTF-8, not RFC 8259 JSON,
        not a JSON object, or hold what could not be written back: a number
        that overflows to infinity (``1e400``), an integer of more than
        :data:`MAX_INT_DIGITS` digits, a lone surrogate, nesting deeper than
        :data:`MAX_DEPTH`.
    """
    if len(data) >= _PAUSE_GC_FROM:
        with _gc_paused():
            document = _decode(data, source)
    else:
        document = _decode(data, source)
    if type(document) is not dict:
        raise SessionCorruptError(
            f"{source} holds a JSON {type(document).__name__}, not an object",
            details={"source": source, "problem": "not an object", "size": len(data)},
        )
    return document


def _decode(data: bytes, source: str) -> Any:
    """The JSON value the bytes hold (any value, not only an object)."""
    try:
        try:
            document, scan = _decode_orjson(data)
        except orjson.JSONDecodeError:
            # orjson refused: the standard decoder words the problem (or accepts
            # what orjson does not, which must then be checked for writability).
            document = _decode_stdlib(data, bounded=True)
            _too_deep_or_unwritable(document)
        else:
            long, huge = _long_numbers(data, scan)
            if long:
                # Integers beyond 64 bits read exactly; the depth is known to be fine.
                document = _decode_stdlib(data, bounded=huge)
    except (UnicodeDecodeError, ValueError, RecursionError, _Corrupt) as exc:
        raise SessionCorruptError(
            f"{source} is not valid UTF-8 JSON that can be stored: {exc}",
            details={"source": source, "problem": str(exc), "size": len(data)},
        ) from None
    return document


def decode_checked(data: bytes, *, source: str = "<data>") -> tuple[dict[str, Any], bool]:
    """:func:`decode`, and whether the result is pure JSON: always True now.

    Kept for callers of earlier versions: :func:`decode` now refuses what is not
    pure JSON (``1e400`` reads as :class:`SessionCorruptError`).

    :raises SessionCorruptError: as :func:`decode`.
    """
    return decode(data, source=source), True
