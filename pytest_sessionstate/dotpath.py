"""Dot paths: addressing nested keys of a JSON object.

``"workflow_progress.initialize"`` names ``doc["workflow_progress"]["initialize"]``.
A literal dot inside a key is written ``\\.`` and a literal backslash ``\\\\``, so
every key, whatever it contains, can be addressed, and ``split(join(s)) == s``
for every tuple ``s`` of non-empty strings.  An update may also give its path as
a tuple of segments, which needs no escaping.

This module is pure (no I/O): the state manager, the Hypothesis strategies and
the state machine's model all share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .errors import SessionValueError

__all__ = [
    "ParsedUpdates",
    "Path",
    "apply_parsed",
    "apply_updates",
    "join",
    "normalize",
    "parse_updates",
    "split",
]

#: A dot path as written (``"a.b"``) or as its segments (``("a", "b")``).
Path = str | tuple[str, ...]


def _bad(path: object, problem: str) -> SessionValueError:
    shown = path if type(path) in (str, tuple) else f"<{type(path).__name__} object>"
    if type(shown) is tuple and not all(type(s) is str for s in shown):
        shown = "<segments>"
    return SessionValueError(
        f"invalid dot path {shown!r}: {problem}",
        details={"path": repr(shown), "problem": problem},
    )


def _exact(text: str) -> str:
    """The characters a str (or str subclass) stores, as an exact ``str``.

    A subclass's own ``split``, ``__eq__``, ``__hash__`` or ``__str__`` must never
    decide which key a path names: from here on only the copy is used.
    """
    return text if type(text) is str else str.__str__(text)


def split(path: str) -> tuple[str, ...]:
    """Split a dot path into its segments, resolving escapes.

    :raises SessionValueError: on an empty segment or a dangling backslash.
    """
    if not issubclass(type(path), str):
        raise _bad(path, f"must be a str, not {type(path).__name__}")
    path = _exact(path)
    if "\\" not in path:
        segments = tuple(path.split("."))
        if "" in segments:
            raise _bad(path, "empty segment")
        return segments
    result: list[str] = []
    current: list[str] = []
    chars = iter(path)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise _bad(path, "dangling backslash at the end")
            if escaped not in ".\\":
                raise _bad(path, f"unknown escape '\\{escaped}' (only '\\.' and '\\\\')")
            current.append(escaped)
        elif char == ".":
            if not current:
                raise _bad(path, "empty segment")
            result.append("".join(current))
            current = []
        else:
            current.append(char)
    if not current:
        raise _bad(path, "empty segment")
    result.append("".join(current))
    return tuple(result)


def join(segments: Iterable[str]) -> str:
    """Join segments into a dot path, escaping dots and backslashes.

    :raises SessionValueError: if there is no segment, or one is empty or not a str.
    """
    segments = _exact_segments(segments)
    return ".".join(s.replace("\\", "\\\\").replace(".", "\\.") for s in segments)


def _exact_segments(segments: Iterable[Any]) -> tuple[str, ...]:
    """Exact ``str`` copies of the segments, checked: none empty, at least one."""
    # A tuple subclass is read from its storage, not through its own __iter__.
    items = (
        list(tuple.__iter__(segments))  # type: ignore[arg-type]
        if issubclass(type(segments), tuple)
        else list(segments)
    )
    if not items:
        raise _bad((), "no segment")
    exact = []
    for item in items:
        if not issubclass(type(item), str):
            raise _bad(
                tuple(items) if all(type(i) is str for i in items) else "<segments>",
                f"segment of type {type(item).__name__} is not a str",
            )
        segment = _exact(item)
        if not segment:
            raise _bad(tuple(map(_exact, items)), "empty segment")
        exact.append(segment)
    return tuple(exact)


def normalize(path: Path) -> tuple[str, ...]:
    """Return the segments of a dot path given as a str or as a tuple of segments.

    The segments are exact ``str`` objects, whatever ``path`` was made of.

    :raises SessionValueError: if the path is malformed or of another type.
    """
    if issubclass(type(path), str):
        return split(path)  # type: ignore[arg-type]
    if issubclass(type(path), tuple):
        return _exact_segments(path)
    raise _bad(path, f"must be a str or a tuple of str, not {type(path).__name__}")


#: Updates parsed by :func:`parse_updates`: ``(segments, value)`` pairs, in order.
ParsedUpdates = list[tuple[tuple[str, ...], Any]]


def parse_updates(updates: Mapping[Any, Any]) -> ParsedUpdates:
    """The first phase of an update: ``updates`` with every path parsed to its segments.

    Done before the lock is taken, so that a malformed path costs no lock and no
    read; :func:`apply_parsed` is the second phase, under the lock.

    :raises SessionValueError: if ``updates`` is not a mapping, or a path is malformed.
    """
    if not isinstance(updates, Mapping):
        raise SessionValueError(
            f"updates must be a mapping of dot paths to values, not {type(updates).__name__}",
            details={"type": type(updates).__name__},
        )
    return [(normalize(path), value) for path, value in updates.items()]


def apply_updates(document: Mapping[str, Any], updates: Mapping[Path, Any]) -> dict[str, Any]:
    """Return a new document with ``updates`` applied; ``document`` is never mutated.

    Updates apply in order; an intermediate object that is missing is created.
    Objects along an updated path are copied, everything else is shared with
    ``document``.

    :raises SessionValueError: if a path is malformed, or runs through a value that
        is not an object (a list, a string, a number...).
    """
    if not isinstance(document, Mapping):
        raise SessionValueError(
            f"document must be a JSON object, not {type(document).__name__}",
            details={"type": type(document).__name__},
        )
    return apply_parsed(document, parse_updates(updates))


def apply_parsed(document: Mapping[str, Any], updates: ParsedUpdates) -> dict[str, Any]:
    """The second phase of an update: a new document with parsed ``updates`` applied.

    As :func:`apply_updates` (``document`` is never mutated, only the objects along
    an updated path are copied), for updates already parsed by :func:`parse_updates`.

    :raises SessionValueError: if a path runs through a value that is not an object.
    """
    result = dict(document)
    # Objects of ``result`` already copied by this call: safe to change in place.
    owned: set[int] = {id(result)}
    for segments, value in updates:
        target = result
        for depth, segment in enumerate(segments[:-1]):
            child = target.get(segment)
            if child is None and segment not in target:
                child = {}
                owned.add(id(child))
            elif not isinstance(child, dict):
                raise SessionValueError(
                    f"cannot update {join(segments)!r}: {join(segments[: depth + 1])!r} "
                    f"is of type {type(child).__name__}, not an object",
                    details={
                        "path": join(segments),
                        "at": join(segments[: depth + 1]),
                        "type": type(child).__name__,
                    },
                )
            elif id(child) not in owned:
                child = dict(child)
                owned.add(id(child))
            target[segment] = child
            target = child
        target[segments[-1]] = value
    return result
