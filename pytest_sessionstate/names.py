"""Validation of session ids and filenames.

A session id and a filename each become one path component under the root, so
they are validated as such before any filesystem access: a name that passes
here can never climb out of the root, hide as a dot-file, or break on Windows.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import SessionTypeError, SessionValueError

__all__ = [
    "is_session_file",
    "MAX_NAME_LENGTH",
    "WINDOWS_RESERVED_NAMES",
    "exact_str",
    "is_valid_name",
    "validate_name",
]

#: The longest id or filename accepted (a single path component on most filesystems).
MAX_NAME_LENGTH = 255

#: Device names that Windows reserves in every directory, with or without an extension.
WINDOWS_RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)

_SHOWN = frozenset({str, bytes, int, float, bool, type(None), list, tuple, dict})

_ALLOWED = re.compile(r"[A-Za-z0-9._-]+")


def _problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"must be a str, not {type(name).__name__}"
    if not name:
        return "must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"must be at most {MAX_NAME_LENGTH} characters, not {len(name)}"
    if _ALLOWED.fullmatch(name) is None:
        return "may contain only ASCII letters, digits, '.', '_' and '-'"
    if name.startswith("."):
        return "must not start with '.'"
    if name.split(".", 1)[0].upper() in WINDOWS_RESERVED_NAMES:
        return "is a name that Windows reserves"
    return None


def exact_str(value: str) -> str:
    """An exact ``str`` copy of ``value``: a subclass's own methods (``__str__``,
    ``__eq__``, ``__hash__``, ``startswith``...) never get a say in a path or a key."""
    return value if type(value) is str else str.__str__(value)


def is_valid_name(name: object) -> bool:
    """Whether ``name`` is acceptable as a session id or a filename."""
    if isinstance(name, str):
        name = exact_str(name)
    return _problem(name) is None


def is_session_file(session: str, filename: str) -> bool:
    """Whether ``session/filename`` names a document: two valid names, one level deep."""
    return (
        bool(filename)
        and "/" not in filename
        and is_valid_name(session)
        and (is_valid_name(filename))
    )


def validate_name(name: Any, kind: str = "name") -> str:
    """Return ``name``, as an exact ``str``, if it is a valid session id or filename.

    A ``str`` subclass is validated and returned as a plain ``str`` copy: use the
    returned value, never the argument, so that the subclass's methods cannot make
    the checked name and the used one differ.

    :param kind: what the name is (``"session id"``, ``"filename"``), for the message.
    :raises SessionValueError: naming the rule that ``name`` breaks
        (:class:`SessionTypeError`, also a :class:`TypeError`, if it is no ``str``).
    """
    if isinstance(name, str):
        name = exact_str(name)
    problem = _problem(name)
    if problem is not None:
        # Only builtins are shown by their repr: a user object's __repr__ may lie or raise.
        shown = repr(name) if type(name) in _SHOWN else f"<{type(name).__name__} object>"
        error = SessionTypeError if not isinstance(name, str) else SessionValueError
        raise error(
            f"invalid {kind} {shown}: {problem}",
            details={"kind": kind, "value": shown, "problem": problem},
        )
    return name  # type: ignore[no-any-return]
