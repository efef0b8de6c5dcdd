"""Validation of session ids and filenames.

A session id and a filename each become one path component under the root, so
they are validated as such before any filesystem access: a name that passes
here can never climb out of the root, hide as a dot-file, or break on Windows.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import SessionValueError

__all__ = ["MAX_NAME_LENGTH", "WINDOWS_RESERVED_NAMES", "is_valid_name", "validate_name"]

#: The longest id or filename accepted (a single path component on most filesystems).
MAX_NAME_LENGTH = 255

#: Device names that Windows reserves in every directory, with or without an extension.
WINDOWS_RESERVED_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)

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


def is_valid_name(name: object) -> bool:
    """Whether ``name`` is acceptable as a session id or a filename."""
    return _problem(name) is None


def validate_name(name: Any, kind: str = "name") -> str:
    """Return ``name`` if it is a valid session id or filename.

    :param kind: what the name is (``"session id"``, ``"filename"``), for the message.
    :raises SessionValueError: naming the rule that ``name`` breaks.
    """
    problem = _problem(name)
    if problem is not None:
        raise SessionValueError(
            f"invalid {kind} {name!r}: {problem}",
            details={"kind": kind, "value": repr(name), "problem": problem},
        )
    return name  # type: ignore[no-any-return]
