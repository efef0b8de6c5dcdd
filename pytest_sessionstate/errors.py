"""The exceptions of pytest-sessionstate.

Every error carries a human-readable message and a ``details`` mapping with the
machine-readable facts (session id, filename, path, timeout...), so callers can
react without parsing messages.  All of them pickle with their details intact,
because the contention simulator and the crash injector move them between
processes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SessionCorruptError",
    "SessionError",
    "SessionLockError",
    "SessionNotFoundError",
    "SessionTypeError",
    "SessionValueError",
]


class SessionError(Exception):
    """Base class of every error raised by the state manager.

    :param message: what went wrong, for people.
    :param details: the facts behind it, for programs.
    """

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details) if details else {}

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception.__reduce__ would pass only ``args`` back: keep the details.
        return (type(self), (self.message, self.details), self.__dict__)


class SessionLockError(SessionError):
    """The session's lock could not be acquired within the timeout."""


class SessionNotFoundError(SessionError, LookupError):
    """The session or the file does not exist."""


class SessionCorruptError(SessionError):
    """A session file exists but is not a valid UTF-8 JSON object.

    The state manager never repairs or hides corruption: it reports it.
    """


class SessionValueError(SessionError, ValueError):
    """Bad input: an invalid id, filename, dot path or non-JSON data.

    Raised before anything on disk is touched.
    """


class SessionTypeError(SessionValueError, TypeError):
    """Bad input of the wrong type (a session id that is not a ``str``, a timeout that
    is not a number, a root that is not a path).

    Both a :class:`SessionValueError`, which the contract promises for any bad
    input to the state manager, and a :class:`TypeError`, which Python code
    expects for an argument of the wrong type (and the testing toolkit raises).
    """
