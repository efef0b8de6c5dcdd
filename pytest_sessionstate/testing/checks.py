"""Argument checks of the toolkit's public calls, with one rule and one message style.

The rule: a wrong *type* raises ``TypeError``, a wrong *value* of the right type
raises ``ValueError``; the message says what was expected and ends with what was
given: ``"workers must be an integer >= 1, not 0"``, ``"target must be callable,
not int"``. (The core raises ``SessionValueError``, a ``ValueError``, for bad
values, with the same wording.) Each check returns the value, checked, so a call
site reads ``workers = checks.integer("workers", workers, minimum=1)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["boolean", "callable_", "choice", "integer", "mapping", "seconds", "sequence"]

T = TypeVar("T", bound=str)


def _type_name(value: object) -> str:
    return type(value).__name__


def callable_(name: str, value: object, *, optional: bool = False) -> Any:
    """``value`` if it is callable (or None, when ``optional``); else TypeError."""
    if value is None and optional:
        return None
    if not callable(value):
        expected = "callable or None" if optional else "callable"
        raise TypeError(f"{name} must be {expected}, not {_type_name(value)}")
    return value


def integer(name: str, value: object, *, minimum: int) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, not {_type_name(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def seconds(name: str, value: object) -> float:
    """``value`` as a float if it is a positive number of seconds (not NaN, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number of seconds, not {_type_name(value)}")
    if math.isnan(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def choice(name: str, value: object, choices: Sequence[T]) -> T:
    """``value`` if it is one of the strings ``choices``."""
    allowed = ", ".join(map(repr, choices))
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {allowed}, not {_type_name(value)}")
    for known in choices:
        if value == known:
            return known
    raise ValueError(f"{name} must be one of {allowed}, not {value!r}")


def boolean(name: str, value: object) -> bool:
    """``value`` if it is True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {_type_name(value)}")
    return value


def sequence(name: str, value: object) -> tuple[Any, ...]:
    """``value`` as a tuple, if it is a sequence other than a string."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a sequence (a tuple or a list), not {_type_name(value)}")
    return tuple(value)


def mapping(name: str, value: object) -> dict[str, Any]:
    """``value`` as a dict, if it is a mapping or None (an empty dict)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping or None, not {_type_name(value)}")
    return dict(value)
