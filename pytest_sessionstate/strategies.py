"""Hypothesis strategies for session state: names, documents, dot paths, updates.

Valid values (:func:`session_ids`, :func:`filenames`, :func:`json_values`,
:func:`documents`, :func:`dot_paths`, :func:`dot_path_updates`) are what the
state manager must accept and give back unchanged; invalid ones
(:func:`invalid_session_ids`, :func:`invalid_filenames`,
:func:`invalid_dot_paths`) are what it must refuse with
:class:`~pytest_sessionstate.SessionValueError`, covering every kind of hostile
input the contract names.

The strategies follow Hypothesis's own API style: functions with plural nouns,
arguments checked when the strategy is made (:class:`~hypothesis.errors.InvalidArgument`),
and values built by construction rather than by filtering, so that a failure
shrinks to a short name, a short path and a small document.

This module imports Hypothesis; ``import pytest_sessionstate`` and the pytest
plugin never import it.
"""

from __future__ import annotations

import copy
import string
from collections.abc import Mapping
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from . import codec, dotpath
from .names import MAX_NAME_LENGTH, WINDOWS_RESERVED_NAMES, is_valid_name

__all__ = [
    "documents",
    "dot_path_updates",
    "dot_paths",
    "filenames",
    "invalid_dot_paths",
    "invalid_filenames",
    "invalid_session_ids",
    "json_values",
    "session_ids",
]

Segments = tuple[str, ...]

# -- names ------------------------------------------------------------------------------

_NAME_FIRST = string.ascii_letters + string.digits + "_-"
_NAME_REST = _NAME_FIRST + "."
_EXTENSIONS = (".json", ".txt", ".state", ".json.bak")


@st.composite
def _names(draw: st.DrawFn, *, extensions: bool = False) -> str:
    """A valid name: short as a rule, one time in ten close to the length limit."""
    first = draw(st.sampled_from(_NAME_FIRST))
    name = first + draw(st.text(_NAME_REST, max_size=12))
    if extensions:
        name += draw(st.sampled_from(("", *_EXTENSIONS)))
    # The long variant is drawn last: when the shrinker turns 9 into 0, the
    # choices before it keep their meaning, and the name becomes the short one.
    if draw(st.integers(0, 9)) == 9:
        name = first + draw(st.text(_NAME_REST, min_size=200, max_size=MAX_NAME_LENGTH - 1))
    if not is_valid_name(name):
        # Only a Windows device name ("con", "Lpt1.json"...) gets here: keep its
        # shape but move it off the reserved list.
        name = "_" + name
    return name


def session_ids() -> st.SearchStrategy[str]:
    """Session ids the state manager accepts.

    Non-empty ASCII letters, digits, ``.``, ``_`` and ``-``, not starting with a
    dot, not a Windows device name, at most 255 characters (the limit itself
    is generated now and then).  Shrinks towards the one-character id ``"a"``.
    """
    return _names()


def filenames() -> st.SearchStrategy[str]:
    """Filenames the state manager accepts (the rules of :func:`session_ids`).

    Often with an extension (``.json``...) to look like the names people use.
    """
    return _names(extensions=True)


# -- JSON ---------------------------------------------------------------------------------

# Dots and backslashes are the interesting characters of a key: they must be
# escaped in a dot path.  Half of the keys are built around one of them
# ("a.b", "\\", "x."), the other half are any text, drawn half of the time from a
# small alphabet and otherwise from all of Unicode (surrogates excluded: they
# cannot be encoded as UTF-8).  The plain branch comes first, so a failure that
# does not need a dot shrinks to a key without one.
_KEY_CHARS = st.one_of(st.sampled_from("ab.\\_"), st.characters(codec="utf-8"))
_KEY_PARTS = st.text(_KEY_CHARS, max_size=3)
_ESCAPED_KEYS = st.builds(
    lambda before, special, after: before + special + after,
    _KEY_PARTS,
    st.sampled_from(".\\"),
    _KEY_PARTS,
)
_KEYS = st.one_of(st.text(_KEY_CHARS, max_size=8), _ESCAPED_KEYS)
_SEGMENTS = st.one_of(st.text(_KEY_CHARS, min_size=1, max_size=8), _ESCAPED_KEYS)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8"), max_size=16),
)
_MAX_LEAVES = 12
_MAX_CHILDREN = 4
_MAX_DOCUMENT_KEYS = 6


# Made once: the state machine makes a dot_path_updates() strategy per step, and
# Hypothesis validates each new recursive strategy anew.
_JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=_MAX_CHILDREN),
        st.dictionaries(_KEYS, children, max_size=_MAX_CHILDREN),
    ),
    max_leaves=_MAX_LEAVES,
)
_DOCUMENTS: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    _KEYS, _JSON_VALUES, max_size=_MAX_DOCUMENT_KEYS
)


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value: ``None``, bools, ints, finite floats, strings, lists and
    objects with ``str`` keys, nested, with at most 12 leaves.

    Lists (never tuples) so that a value read back compares equal to the one written.
    """
    return _JSON_VALUES


def documents() -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects, the documents a session file holds (at most 6 top-level keys).

    Keys often contain dots and backslashes, so updates to them need escaping.
    """
    return _DOCUMENTS


# -- dot paths ----------------------------------------------------------------------------


def _check_depth(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(f"{name}={value!r} must be an int, not {type(value).__name__}")
    return value


def _segment_lists(min_depth: int, max_depth: int) -> st.SearchStrategy[list[str]]:
    return st.lists(_SEGMENTS, min_size=min_depth, max_size=max_depth)


def dot_paths(*, min_depth: int = 1, max_depth: int = 4) -> st.SearchStrategy[str]:
    """Well-formed dot paths of ``min_depth`` to ``max_depth`` segments.

    Segments often contain dots and backslashes, escaped (``"a\\\\.b"`` is the one
    segment ``"a.b"``), so ``split`` gives back exactly the drawn segments.

    :raises InvalidArgument: unless ``1 <= min_depth <= max_depth`` (ints).
    """
    min_depth = _check_depth("min_depth", min_depth)
    max_depth = _check_depth("max_depth", max_depth)
    if min_depth < 1:
        raise InvalidArgument(f"min_depth={min_depth} must be at least 1: a path has a segment")
    if max_depth < min_depth:
        raise InvalidArgument(f"max_depth={max_depth} must be at least min_depth={min_depth}")
    return _segment_lists(min_depth, max_depth).map(dotpath.join)


def _tree(document: Mapping[str, Any]) -> tuple[list[Segments], list[Segments], list[Segments]]:
    """The addressable paths of ``document``, shallowest first (they shrink first).

    Returns ``(objects, leaves, nested)``: every object including the root ``()``,
    every path to a value that is not an object, every path to a nested object.
    Keys that are empty strings cannot be addressed and are skipped.
    """
    objects: list[Segments] = [()]
    leaves: list[Segments] = []
    nested: list[Segments] = []
    queue: list[tuple[Segments, Mapping[str, Any]]] = [((), document)]
    for prefix, node in queue:  # breadth first; the queue grows while we walk it
        for key, value in node.items():
            if not key:
                continue
            path = (*prefix, key)
            if isinstance(value, dict):
                objects.append(path)
                nested.append(path)
                queue.append((path, value))
            else:
                leaves.append(path)
    return objects, leaves, nested


def _runs_through_value(document: Mapping[str, Any], path: Segments) -> bool:
    """Whether ``path`` would have to go through a value that is not an object."""
    node: Any = document
    for segment in path[:-1]:
        if segment not in node:
            return False  # the rest of the path is created
        node = node[segment]
        if not isinstance(node, dict):
            return True
    return False


def _overlaps(path: Segments, other: Segments) -> bool:
    shorter = min(len(path), len(other))
    return path[:shorter] == other[:shorter]


_MAX_UPDATES = 5
_NEW, _LEAF, _OBJECT = 0, 1, 2

# One candidate update path: a kind, an index into the document's paths of that
# kind, and the segments of a new path.  All three are always drawn, so the
# choices mean the same whatever the document: when the shrinker removes a key
# from the document, the updates keep their shape and go on shrinking.
_CANDIDATES = st.lists(
    st.tuples(
        st.integers(_NEW, _OBJECT),
        st.integers(0, 2**16),
        st.lists(_SEGMENTS, min_size=1, max_size=3),
    ),
    max_size=_MAX_UPDATES,
)


@st.composite
def _updates(draw: st.DrawFn, document: dict[str, Any]) -> dict[dotpath.Path, Any]:
    objects, leaves, nested = _tree(document)
    updates: dict[dotpath.Path, Any] = {}
    chosen: list[Segments] = []
    for kind, index, tail in draw(_CANDIDATES):
        path: Segments
        if kind == _LEAF and leaves:
            path = leaves[index % len(leaves)]
        elif kind == _OBJECT and nested:
            path = nested[index % len(nested)]
        else:  # a new path, under the root or under an existing object
            path = (*objects[index % len(objects)], *tail)
        # Drop a candidate instead of rejecting the example: no wasted draws.
        if _runs_through_value(document, path) or any(_overlaps(path, p) for p in chosen):
            continue
        chosen.append(path)
        key: dotpath.Path = path if draw(st.booleans()) else dotpath.join(path)
        updates[key] = draw(_JSON_VALUES)
    return updates


def dot_path_updates(
    document: Mapping[str, Any] | None = None,
) -> st.SearchStrategy[dict[dotpath.Path, Any]]:
    """Update mappings (for ``update_json``) that apply to ``document`` without conflict.

    Keys are dot paths, as escaped strings or as tuples of segments; values are
    JSON values.  Paths are a mix of new ones (under an existing object or under
    the root), existing leaves and existing objects (both replaced).  No path is a
    prefix of another (so every path reads back its own value, whatever the order
    of application), and none runs through a value of ``document`` that is not an
    object.  Shrinks to the empty mapping, then to few, short paths.

    :param document: the JSON object the updates are for; None means ``{}``.
        Copied when the strategy is made.
    :raises InvalidArgument: if ``document`` is not a JSON object.
    """
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise InvalidArgument(
            f"document={document!r} must be a JSON object (a dict), not {type(document).__name__}"
        )
    problem = codec.find_invalid(dict(document))
    if problem is not None:
        path, what = problem
        raise InvalidArgument(f"document is not JSON: {path}: {what}")
    return _updates(copy.deepcopy(dict(document)))


# -- hostile input ------------------------------------------------------------------------

_SHORT_NAMES = st.text(_NAME_REST, max_size=8).flatmap(
    lambda rest: st.sampled_from(_NAME_FIRST).map(lambda first: first + rest)
)
_FORBIDDEN_ASCII = "".join(
    chr(c) for c in range(128) if chr(c) not in _NAME_REST and chr(c) not in "/\\\x00"
)
# Characters that look like allowed ones: one dot leader, fullwidth full stop and
# solidus, division slash, Cyrillic 'a', non-breaking space, combining acute accent.
_LOOKALIKES = "\u2024\uff0e\uff0f\u2215\u0430\u00a0\u0301"


@st.composite
def _inserted(draw: st.DrawFn, chars: st.SearchStrategy[str]) -> str:
    name = draw(_SHORT_NAMES)
    position = draw(st.integers(0, len(name)))
    return name[:position] + draw(chars) + name[position:]


@st.composite
def _reserved_names(draw: st.DrawFn) -> str:
    device = draw(st.sampled_from(sorted(WINDOWS_RESERVED_NAMES)))
    upper = draw(st.lists(st.booleans(), min_size=len(device), max_size=len(device)))
    name = "".join(c.upper() if u else c.lower() for c, u in zip(device, upper, strict=True))
    extension = draw(st.one_of(st.just(""), _SHORT_NAMES.map(lambda n: "." + n)))
    return name + extension


_TRAVERSALS = ("../{}", "../../{}", "{}/..", "{}/../../{}", "..\\{}", "{}\\..\\..", "{}/{}")
_ABSOLUTE = ("/{}", "/etc/{}", "/tmp/{}", "C:\\{}", "C:/{}", "\\\\server\\share\\{}", "~/{}")


def _invalid_names(hidden: tuple[str, ...], *, none: bool) -> st.SearchStrategy[Any]:
    """Every kind of name the state manager must refuse, one branch per kind."""
    return st.one_of(
        st.just(""),
        st.sampled_from((".", "..")),
        # hidden files: the lock file, temp files, any leading dot
        st.one_of(st.sampled_from(hidden), _SHORT_NAMES.map(lambda n: "." + n)),
        st.builds(str.format, st.sampled_from(_TRAVERSALS), _SHORT_NAMES, _SHORT_NAMES),
        st.builds(str.format, st.sampled_from(_ABSOLUTE), _SHORT_NAMES),
        _inserted(st.sampled_from("/\\")),
        _inserted(st.just("\x00")),
        _inserted(st.sampled_from(_FORBIDDEN_ASCII)),
        _inserted(st.one_of(st.sampled_from(_LOOKALIKES), st.characters(min_codepoint=128))),
        _reserved_names(),
        # too long: one past the limit and more
        st.builds(
            str.__add__,
            st.sampled_from(_NAME_FIRST),
            st.text(_NAME_REST, min_size=MAX_NAME_LENGTH, max_size=MAX_NAME_LENGTH + 40),
        ),
        # not a str at all
        st.one_of(
            *([st.none()] if none else []),
            st.integers(),
            st.booleans(),
            st.floats(),
            _SHORT_NAMES.map(str.encode),
            _SHORT_NAMES.map(PurePosixPath),
            _SHORT_NAMES.map(PureWindowsPath),
            st.tuples(_SHORT_NAMES),
        ),
    )


def invalid_session_ids() -> st.SearchStrategy[Any]:
    """Values that are not session ids: the state manager must raise SessionValueError.

    Every kind of hostile input: ``""``, ``.``, ``..``, a leading dot, ``/`` and ``\\``,
    traversals (``../x``), absolute paths (``/etc/x``, ``C:\\x``), NUL, other ASCII
    punctuation and whitespace, non-ASCII (also look-alikes of ``.`` and ``/``),
    Windows device names in any case and with an extension (``cOn.json``), names
    over 255 characters, and things that are not a str (``None``, ints, bytes,
    paths...).
    """
    return _invalid_names((".lock", ".session"), none=True)


def invalid_filenames() -> st.SearchStrategy[Any]:
    """Values that are not filenames: every kind of :func:`invalid_session_ids`, plus
    the session's own hidden files (the lock file, a temp file of the write protocol).

    Never ``None``: ``exists(None)`` and ``delete(None)`` mean the whole session.
    """
    return _invalid_names(
        (".lock", ".state.json.0123456789abcdef.tmp", ".state.json.tmp"), none=False
    )


_ESCAPE_UNITS = {".": "\\.", "\\": "\\\\"}
_UNKNOWN_ESCAPES = st.characters(codec="utf-8").filter(lambda c: c not in ".\\")


def _units(segment: str) -> list[str]:
    """A segment as escaped units: a corruption between two units lands between escapes."""
    return [_ESCAPE_UNITS.get(c, c) for c in segment]


@st.composite
def _corrupted_paths(draw: st.DrawFn) -> str:
    segments = draw(_segment_lists(1, 3))
    escaped = [dotpath.join([segment]) for segment in segments]
    kind = draw(st.sampled_from(("empty segment", "dangling backslash", "unknown escape")))
    if kind == "empty segment":  # ".a", "a..b", "a."
        escaped.insert(draw(st.integers(0, len(escaped))), "")
    elif kind == "dangling backslash":  # "a\\"
        escaped[-1] += "\\"
    else:  # "a\\qb": inserted between two escaped units, so it is read as an escape
        index = draw(st.integers(0, len(segments) - 1))
        units = _units(segments[index])
        units.insert(draw(st.integers(0, len(units))), "\\" + draw(_UNKNOWN_ESCAPES))
        escaped[index] = "".join(units)
    return ".".join(escaped)


def invalid_dot_paths() -> st.SearchStrategy[Any]:
    """Update keys that ``update_json`` must refuse with SessionValueError.

    Empty paths and empty segments (``""``, ``"."``, ``"a..b"``, ``".a"``, ``"a."``),
    a dangling backslash (``"a\\\\"``), unknown escapes (``"a\\\\nb"``), tuples with
    no segment, an empty segment or a segment that is not a str, and keys that
    are neither a str nor a tuple.  All hashable: they are keys of a mapping.
    """
    return st.one_of(
        st.sampled_from(("", ".", "..", "\\")),
        _corrupted_paths(),
        st.just(()),
        st.builds(
            lambda before, bad, after: (*before, bad, *after),
            st.lists(_SEGMENTS, max_size=2),
            st.one_of(st.just(""), st.none(), st.integers(), _SEGMENTS.map(str.encode)),
            st.lists(_SEGMENTS, max_size=2),
        ),
        st.one_of(st.none(), st.integers(), st.booleans(), _SEGMENTS.map(str.encode)),
    )
