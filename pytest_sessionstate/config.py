"""Where sessions live and how they are written, and which settings are in force.

``settings`` is the process's default, read from the environment at import.
``use_settings`` swaps in another one for a block of code (the pytest fixtures
use it to point the code under test at a temporary root); every
:class:`~pytest_sessionstate.StateManager` made without ``settings=`` takes the
settings in force when it is made.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Union

from .errors import SessionTypeError, SessionValueError
from .names import exact_str, validate_name

__all__ = [
    "ROOT_ENV_VAR",
    "Settings",
    "current_settings",
    "default_root",
    "settings",
    "use_settings",
]

#: The environment variable that sets the default root.
ROOT_ENV_VAR = "SESSIONSTATE_ROOT"

StrPath = Union[str, "os.PathLike[str]"]


_SHOWN = frozenset({str, bytes, bool, type(None), list, tuple, dict, complex})


def to_seconds(value: object, name: str) -> float:
    """A timeout in seconds as a float; an int too large for a float is infinite.

    :raises SessionTypeError: if ``value`` is not an int or float (bools refused).
    :raises SessionValueError: if it is NaN.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # Only builtins are shown by their repr: a user object's __repr__ may lie or raise.
        shown = repr(value) if type(value) in _SHOWN else type(value).__name__
        raise SessionTypeError(
            f"{name} must be a number of seconds, not {shown}", details={name: shown}
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond the float range: as good as for ever
        seconds = math.inf if value > 0 else -math.inf
    if math.isnan(seconds):
        raise SessionValueError(
            f"{name} must be a number of seconds, not nan", details={name: "nan"}
        )
    return seconds


def default_root() -> Path:
    """The root used when ``SESSIONSTATE_ROOT`` is not set.

    ``$XDG_STATE_HOME/sessionstate`` (``~/.local/state/sessionstate``) on POSIX,
    ``%LOCALAPPDATA%\\sessionstate`` on Windows: per-user, outside any project tree.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "sessionstate"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sessionstate"


class Settings:
    """Where sessions are stored and how they are written.

    :param root: the directory that holds one subdirectory per session.
    :param lock_timeout: seconds ``lock()`` waits by default; ``0`` means one attempt,
        a negative number waits forever.
    :param durable: fsync every write (file and directory) before it is acknowledged.
        Turn off only where losing recent writes on power loss is acceptable
        (tests, caches).
    :raises SessionTypeError: if an argument has the wrong type (a
        :class:`SessionValueError` that is also a :class:`TypeError`).
    :raises SessionValueError: if the root is empty or the timeout NaN.
    """

    __slots__ = ("_durable", "_lock_timeout", "_root")

    def __init__(self, root: StrPath, *, lock_timeout: float = 30.0, durable: bool = True) -> None:
        if not isinstance(root, (str, os.PathLike)):
            shown = repr(root) if type(root) in _SHOWN else type(root).__name__
            raise SessionTypeError(
                f"root must be a path (str or os.PathLike), not {shown}",
                details={"root": shown},
            )
        if not os.fspath(root):
            raise SessionValueError(
                f"root must be a non-empty path, not {root!r}", details={"root": repr(root)}
            )
        seconds = to_seconds(lock_timeout, "lock_timeout")
        if not isinstance(durable, bool):
            raise SessionTypeError(
                f"durable must be a bool, not {durable!r}", details={"durable": repr(durable)}
            )
        self._root = Path(os.path.abspath(os.path.expanduser(exact_str(os.fspath(root)))))
        self._lock_timeout = seconds
        self._durable = durable

    @property
    def root(self) -> Path:
        """The directory that holds the sessions (absolute)."""
        return self._root

    @property
    def lock_timeout(self) -> float:
        """Default seconds to wait for a session's lock."""
        return self._lock_timeout

    @property
    def session_lock_timeout(self) -> float:
        """Read-only alias of :attr:`lock_timeout` (the original code's name)."""
        return self._lock_timeout

    @property
    def durable(self) -> bool:
        """Whether writes are fsynced before they are acknowledged."""
        return self._durable

    def replace(
        self,
        *,
        root: StrPath | None = None,
        lock_timeout: float | None = None,
        durable: bool | None = None,
    ) -> Settings:
        """Return a copy with the given fields changed."""
        return Settings(
            self._root if root is None else root,
            lock_timeout=self._lock_timeout if lock_timeout is None else lock_timeout,
            durable=self._durable if durable is None else durable,
        )

    def get_session_path(self, session_id: str) -> Path:
        """Return ``root / session_id`` after validating the id.

        :raises SessionValueError: if the id is invalid, or the session's path is a
            symlink (it could lead out of the root).
        """
        session_id = validate_name(session_id, "session id")
        path = self._root / session_id
        if path.is_symlink():
            raise SessionValueError(
                f"session path {str(path)!r} is a symlink; refusing to follow it out of the root",
                details={"session_id": session_id, "path": str(path)},
            )
        return path

    def __repr__(self) -> str:
        return (
            f"Settings({str(self._root)!r}, lock_timeout={self._lock_timeout!r}, "
            f"durable={self._durable!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Settings):
            return NotImplemented
        return (self._root, self._lock_timeout, self._durable) == (
            other._root,
            other._lock_timeout,
            other._durable,
        )

    def __hash__(self) -> int:
        return hash((self._root, self._lock_timeout, self._durable))

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (str(self._root), self._lock_timeout, self._durable))


def _rebuild(root: str, lock_timeout: float, durable: bool) -> Settings:
    return Settings(root, lock_timeout=lock_timeout, durable=durable)


#: The process's default settings: root from ``SESSIONSTATE_ROOT``, else :func:`default_root`.
settings = Settings(os.environ.get(ROOT_ENV_VAR) or default_root())

_active: Settings | None = None
# The open use_settings() blocks, oldest first: (token, settings).  Each block
# removes its own entry on exit, so blocks that overlap without nesting (in two
# threads) still leave the settings as they were before the first.
_blocks: list[tuple[object, Settings]] = []
_active_lock = threading.Lock()


#: Consulted by :func:`current_settings` when no :func:`use_settings` block is active:
#: called with :data:`settings`, it returns the settings to use or raises.  None (the
#: default) costs nothing.  The pytest plugin sets it for the isolation ini option
#: (``sessionstate_isolation = strict``) to fail a test that reaches the real root.
default_settings_guard: Callable[[Settings], Settings] | None = None


def current_settings() -> Settings:
    """The settings in force: the innermost :func:`use_settings`, else :data:`settings`
    (passed through ``default_settings_guard`` when one is set)."""
    active = _active
    if active is not None:
        return active
    guard = default_settings_guard
    return settings if guard is None else guard(settings)


@contextmanager
def use_settings(new: Settings) -> Iterator[Settings]:
    """Make ``new`` the settings in force for the block, in every thread of the process.

    The latest block still open is in force.  Nested blocks restore the settings
    they replaced on exit, also on exception; blocks that overlap without nesting
    (two threads) each withdraw only their own, so when every block has exited the
    settings are what they were before the first.

    :raises TypeError: if ``new`` is not a :class:`Settings`.
    """
    global _active
    if not isinstance(new, Settings):
        raise TypeError(f"use_settings() takes a Settings, not {type(new).__name__}")
    token = object()
    with _active_lock:
        _blocks.append((token, new))
        _active = new
    try:
        yield new
    finally:
        with _active_lock:
            for index, (owner, _) in enumerate(_blocks):
                if owner is token:
                    del _blocks[index]
                    break
            _active = _blocks[-1][1] if _blocks else None
