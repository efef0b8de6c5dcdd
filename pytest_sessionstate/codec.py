"""Strict JSON: what may be stored, and how it is encoded and decoded.

Only JSON goes in and comes out: objects with ``str`` keys, arrays (lists or
tuples), strings, integers, finite floats, booleans and ``None``.  Anything
else is refused with the path of the offending value, instead of being turned
silently into a string (as ``default=str`` did) or written as invalid JSON
(``NaN``, ``Infinity``).  Decoding follows RFC 8259: UTF-8 only, no ``NaN`` or
``Infinity`` tokens, and a session file must hold an object.

Files are written indented (two spaces) so people can read them.  The standard
library's encoder falls back to pure Python as soon as ``indent`` is set (about
40x slower on a large document), so encoding goes through orjson, a C encoder
that indents natively, after a fast validation pass of our own: orjson alone
would write ``NaN`` as ``null`` and would accept datetimes.  Values orjson
cannot represent (integers beyond 64 bits, very deep nesting) fall back to the
standard encoder; decoding uses the standard decoder, which keeps big integers
exact where orjson would turn them into floats.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import SessionCorruptError, SessionValueError

try:  # pragma: no cover - exercised by whichever branch is installed
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment]

__all__ = ["decode", "decode_checked", "encode", "find_invalid"]


def _is_plain(value: Any) -> bool:
    kind = type(value)
    return kind is str or kind is int or kind is bool or value is None


#: How many values the fast pass visits before it hands over to the slow one: a
#: circular reference would otherwise keep it (and its stack) growing for ever.
_FAST_BUDGET = 1_000_000


def _fast_check(document: Any) -> bool:
    """True if ``document`` is pure JSON; a tight loop with no path bookkeeping.

    False means "not proven": the slow pass then judges (and names the culprit).
    """
    stack = [document]
    pop = stack.pop
    push = stack.append
    isfinite = math.isfinite
    budget = _FAST_BUDGET
    while stack:
        value = pop()
        kind = type(value)
        if kind is dict or kind is list or kind is tuple:
            budget -= len(value)
            if budget < 0:
                return False  # too big or circular: the slow pass checks for cycles
        if kind is dict:
            for key, item in value.items():
                if type(key) is not str:
                    return False
                item_kind = type(item)
                if item_kind is str or item_kind is int or item_kind is bool or item is None:
                    continue
                push(item)
        elif kind is list or kind is tuple:
            for item in value:
                item_kind = type(item)
                if item_kind is str or item_kind is int or item_kind is bool or item is None:
                    continue
                push(item)
        elif kind is float:
            if not isfinite(value):
                return False
        elif not _is_plain(value):
            return False  # a subclass or a foreign type: let the slow pass judge it
    return True


def _describe(path: list[str]) -> str:
    return "".join(path) or "<document>"


def find_invalid(document: Any) -> tuple[str, str] | None:
    """Return ``(path, problem)`` for the first non-JSON value, or None if all is JSON.

    The path is written like ``["items"][3]["when"]``.
    """
    if _fast_check(document):
        return None
    return _slow_check(document, [], set())


def _slow_check(value: Any, path: list[str], seen: set[int]) -> tuple[str, str] | None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return _describe(path), f"{value!r} is not a finite number (JSON has no NaN or Infinity)"
    if isinstance(value, (dict, list, tuple)):
        if id(value) in seen:
            return _describe(path), "circular reference"
        seen.add(id(value))
        try:
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        return (
                            _describe(path),
                            f"key {key!r} is of type {type(key).__name__}; JSON keys must be str",
                        )
                    path.append(f"[{key!r}]")
                    found = _slow_check(item, path, seen)
                    path.pop()
                    if found:
                        return found
            else:
                for index, item in enumerate(value):
                    path.append(f"[{index}]")
                    found = _slow_check(item, path, seen)
                    path.pop()
                    if found:
                        return found
        finally:
            seen.discard(id(value))
        return None
    return _describe(path), f"{type(value).__name__} is not a JSON type"


def _invalid(where: str, problem: str) -> SessionValueError:
    return SessionValueError(
        f"not JSON at {where}: {problem}", details={"path": where, "problem": problem}
    )


def encode(document: Any, *, validated: bool = False) -> bytes:
    """Encode a JSON object as indented UTF-8 with a final newline.

    :param validated: the caller vouches that every value is JSON (for example a
        document from :func:`decode_checked` whose changed values passed
        :func:`find_invalid`), so the validation pass is skipped.  It is the
        costliest step on a large document.
    :raises SessionValueError: naming the path of the first value that is not JSON,
        or if ``document`` is not an object.
    """
    if not isinstance(document, dict):
        raise _invalid(
            "<document>", f"a session file holds a JSON object, not a {type(document).__name__}"
        )
    if not validated:
        try:
            found = find_invalid(document)
        except RecursionError:
            raise _invalid("<document>", "nested too deeply") from None
        if found is not None:
            raise _invalid(*found)
    if _orjson is not None:
        try:
            return _orjson.dumps(document, option=_orjson.OPT_INDENT_2 | _orjson.OPT_APPEND_NEWLINE)
        except TypeError:
            pass  # valid JSON that orjson cannot write (a huge int, deep nesting...)
    try:
        text = json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode("utf-8")
    except (ValueError, RecursionError) as exc:
        raise _invalid("<document>", str(exc)) from None


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON (RFC 8259)")


class _NotFinite(Exception):
    """Internal: a number literal overflowed to an infinity (``1e400``)."""


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value - value != 0.0:  # inf - inf is nan
        raise _NotFinite
    return value


# One decoder for every call: ``json.loads(text, parse_constant=...)`` builds a new
# decoder and scanner each time (3 us, a tenth of a small transaction's CPU).
_decode_text = json.JSONDecoder(parse_constant=_reject_constant).decode
# The same, but an overflowing number literal stops it: what it returns is pure JSON.
_decode_pure = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float).decode


def decode(data: bytes, *, source: str = "<data>") -> dict[str, Any]:
    """Decode a session file's bytes into a JSON object.

    :param source: names the file in the error message.
    :raises SessionCorruptError: if the bytes are not UTF-8, not RFC 8259 JSON,
        or not a JSON object.
    """
    return _decode(data, source, checked=False)[0]


def decode_checked(data: bytes, *, source: str = "<data>") -> tuple[dict[str, Any], bool]:
    """:func:`decode`, and whether the result is pure JSON (:func:`find_invalid` is None).

    It is, unless a number literal overflowed to an infinity (``1e400``, which the
    standard decoder accepts): such a document is returned as :func:`decode` does,
    with False, so that writing it back validates it (and refuses it).  The check
    costs a Python call per float literal, so only callers that use the answer
    ask for it.

    :raises SessionCorruptError: as :func:`decode`.
    """
    return _decode(data, source, checked=True)


# orjson decodes twice as fast as the standard decoder and accepts no more than it
# does, but reads an integer beyond 64 bits as a float: bytes holding a run of 19 or
# more digits (where such an integer may hide) go to the standard decoder, and so
# does anything orjson refuses (lone surrogates, numbers that overflow to infinity,
# invalid UTF-8...), which then accepts, or refuses with its own wording, as before.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19


def _decode_fast(data: bytes) -> Any:
    """The document, or None when the standard decoder must decide."""
    if _orjson is None or data.translate(_DIGITS_TO_ZERO).find(_LONG_NUMBER) >= 0:
        return None
    try:
        return _orjson.loads(data)
    except _orjson.JSONDecodeError:
        return None


def _decode(data: bytes, source: str, *, checked: bool) -> tuple[dict[str, Any], bool]:
    pure = checked
    document = _decode_fast(data)
    if isinstance(document, dict):
        return document, pure  # orjson refuses overflowing numbers: it is pure JSON
    try:
        text = data.decode("utf-8")
        if text.startswith("\ufeff"):
            # json.loads words this case best ("Unexpected UTF-8 BOM"); it fails.
            document = json.loads(text, parse_constant=_reject_constant)
        elif checked:
            try:
                document = _decode_pure(text)
            except _NotFinite:
                pure = False
                document = _decode_text(text)
        else:
            document = _decode_text(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SessionCorruptError(
            f"{source} is not valid UTF-8 JSON: {exc}",
            details={"source": source, "problem": str(exc), "size": len(data)},
        ) from None
    if not isinstance(document, dict):
        raise SessionCorruptError(
            f"{source} holds a JSON {type(document).__name__}, not an object",
            details={"source": source, "problem": "not an object", "size": len(data)},
        )
    return document, pure
