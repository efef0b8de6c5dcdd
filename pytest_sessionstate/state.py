"""StateManager: one session's directory of JSON files, locked, atomic and durable.

Grew out of the original ``state_manager.py``; the methods keep its names and
behaviour on a good day, and hold on a bad one: a killed holder never blocks
the lock, a crash mid-write leaves the old or the new document, and bad input
raises a clear error before anything on disk is touched.
"""

from __future__ import annotations

import copy
import math
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import codec, fsops, probes
from .dotpath import Path as DotPath
from .dotpath import _apply, _normalize_updates
from .errors import SessionNotFoundError, SessionValueError
from .locking import LockContext, SessionLock, lock_for
from .names import is_valid_name, validate_name
from .probes import ProbeEvent
from .settings import Settings, current_settings

__all__ = ["LOCK_FILENAME", "StateManager", "get_session_or_raise", "list_sessions"]

#: Name of the lock file inside each session directory.
LOCK_FILENAME = ".lock"

JSONObject = dict[str, Any]


def _check_timeout(timeout: object) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or (isinstance(timeout, float) and math.isnan(timeout))
    ):
        raise SessionValueError(
            f"timeout must be a number of seconds or None, not {timeout!r}",
            details={"timeout": repr(timeout)},
        )
    return float(timeout)


class StateManager:
    """Atomic, durable, locked access to the JSON files of one session.

    :param session_id: the session's id (see :func:`~pytest_sessionstate.names.validate_name`).
    :param settings: where and how to store it; by default the settings in force
        (:func:`~pytest_sessionstate.use_settings`, else the module default).
    :raises SessionValueError: if the id is invalid or its path is a symlink.

    Making a StateManager touches nothing on disk; the session directory is
    created by the first write.
    """

    __slots__ = ("_lock", "lock_file", "session_dir", "session_id", "settings")

    def __init__(self, session_id: str, *, settings: Settings | None = None) -> None:
        if settings is not None and not isinstance(settings, Settings):
            raise TypeError(f"settings must be a Settings, not {type(settings).__name__}")
        self.settings: Settings = settings if settings is not None else current_settings()
        self.session_dir: Path = self.settings.get_session_path(session_id)
        self.session_id: str = session_id
        self.lock_file: Path = self.session_dir / LOCK_FILENAME
        self._lock: SessionLock | None = None

    def __repr__(self) -> str:
        return f"StateManager({self.session_id!r}, settings={self.settings!r})"

    # -- locking -----------------------------------------------------------------

    def _session_lock(self) -> SessionLock:
        lock = self._lock
        if lock is None:
            # One SessionLock per real file, whatever path spelling reaches it.  Only the
            # directory is resolved: a symlinked lock file must not lead out of the root.
            real_dir = os.path.realpath(self.session_dir)
            lock = self._lock = lock_for(os.path.join(real_dir, LOCK_FILENAME))
        return lock

    def _on_created_dir(self) -> None:
        if self.settings.durable:
            fsops.fsync_dir(self.session_dir.parent)
        if probes.listeners:
            probes.emit(ProbeEvent("dir-created", self.session_dir, durable=self.settings.durable))

    def lock(self, timeout: float | None = None) -> LockContext:
        """Hold the session's exclusive lock for a ``with`` block.

        :param timeout: seconds to wait; None for ``settings.lock_timeout``, ``0`` for
            a single attempt, a negative number to wait forever.  Measured on a real
            clock, also under freezegun.
        :raises SessionLockError: if the lock is not acquired in time; its ``details``
            hold ``session_id`` and ``timeout``.

        Excludes other processes and other threads; re-entrant for the thread that
        holds it, through any StateManager of the session.  Creates the session
        directory if needed.
        """
        seconds = self.settings.lock_timeout if timeout is None else _check_timeout(timeout)
        return LockContext(self, self._session_lock(), seconds)

    def _lock_creating(self) -> LockContext:
        """``lock()`` for a write that may create the session: if the write fails on a
        session that entering the lock created, the session is removed again, so a
        failed write leaves no empty session behind."""
        return LockContext(self, self._session_lock(), self.settings.lock_timeout, discard_new=True)

    def _lock_existing(self, filename: str | None) -> LockContext:
        """``lock()`` for an operation on what exists: a missing session is not created
        but reported as :class:`SessionNotFoundError` (for ``filename``)."""
        return LockContext(
            self,
            self._session_lock(),
            self.settings.lock_timeout,
            missing=lambda: self._not_found(filename),
        )

    # -- reading -------------------------------------------------------------------

    def _not_found(self, filename: str | None) -> SessionNotFoundError:
        if filename is None:
            return SessionNotFoundError(
                f"session not found: {self.session_id!r}", details={"session_id": self.session_id}
            )
        return SessionNotFoundError(
            f"file not found: {filename!r} in session {self.session_id!r}",
            details={"session_id": self.session_id, "filename": filename},
        )

    def _read(self, filename: str) -> JSONObject:
        return self._read_checked(filename)[0]

    def _read_checked(self, filename: str) -> tuple[JSONObject, bool]:
        """The document, and whether it is pure JSON (see :func:`codec.decode_checked`)."""
        try:
            data = fsops.read_file(self.session_dir, filename)
        except FileNotFoundError:
            raise self._not_found(filename) from None
        except NotADirectoryError:
            raise self._not_found(filename) from None
        document, pure = codec.decode_checked(data, source=f"{self.session_id}/{filename}")
        if probes.listeners:
            probes.emit(
                ProbeEvent("read", self.session_dir, filename, durable=self.settings.durable)
            )
        return document, pure

    def read_json(self, filename: str) -> JSONObject:
        """Return the JSON object stored in ``filename``.

        :raises SessionNotFoundError: if the file does not exist.
        :raises SessionCorruptError: if it is not valid UTF-8 JSON or not an object.
        """
        validate_name(filename, "filename")
        return self._read(filename)

    # -- writing -------------------------------------------------------------------

    def _write(self, filename: str, data: bytes) -> None:
        fsops.write_file(self.session_dir, filename, data, durable=self.settings.durable)

    def write_json(self, filename: str, data: Mapping[str, Any]) -> None:
        """Replace ``filename`` with ``data``, atomically and (by default) durably.

        Readers see the old or the new document, never a mix.  With durable
        settings the data is on disk when this returns.

        :raises SessionValueError: if ``data`` is not a JSON object (naming the
            offending path); nothing is written.
        :raises SessionLockError: if the lock is not acquired in time.
        :raises OSError: if the disk fails; the previous document is intact.
        """
        validate_name(filename, "filename")
        if isinstance(data, Mapping) and not isinstance(data, dict):
            data = dict(data)  # any Mapping is an object (MappingProxyType, UserDict...)
        encoded = codec.encode(data)
        with self._lock_creating():
            self._write(filename, encoded)

    def update_json(self, filename: str, updates: Mapping[DotPath, Any]) -> JSONObject:
        """Apply dot-path ``updates`` to ``filename`` under one lock; return the new document.

        ``{"workflow_progress.initialize": "completed"}`` sets
        ``doc["workflow_progress"]["initialize"]``, creating missing objects.
        Keys may also be tuples of segments; see :mod:`pytest_sessionstate.dotpath`.

        :raises SessionNotFoundError: if the file does not exist.
        :raises SessionValueError: for a malformed path, a path through a value that is
            not an object, or a value that is not JSON; the file is unchanged.
        """
        validate_name(filename, "filename")
        parsed = _normalize_updates(updates)
        with self._lock_existing(filename):
            document, pure = self._read_checked(filename)
            document = _apply(document, parsed)
            # A pure document stays pure if the new values are: then only they need the
            # validation pass (on a large document it costs more than all the rest).
            # Otherwise the whole document is validated, naming the culprit's full path.
            validated = pure and all(codec.find_invalid(value) is None for _, value in parsed)
            self._write(filename, codec.encode(document, validated=validated))
        return document

    @contextmanager
    def transaction(
        self, filename: str, *, default: Mapping[str, Any] | None = None
    ) -> Iterator[JSONObject]:
        """Read, change in place, write back, all under the lock.

        On normal exit the dict is written atomically; on exception nothing is (a
        session that the transaction created is removed again).

        :param default: the document to start from (deep-copied) if the file is
            missing; without it a missing file raises :class:`SessionNotFoundError`.
        :raises SessionValueError: if the dict is no longer JSON at exit; nothing is
            written.
        """
        validate_name(filename, "filename")
        if default is not None and not isinstance(default, Mapping):
            raise SessionValueError(
                f"default must be a JSON object, not {type(default).__name__}",
                details={"type": type(default).__name__},
            )
        with self._lock_creating() if default is not None else self._lock_existing(filename):
            try:
                document = self._read(filename)
            except SessionNotFoundError:
                if default is None:
                    raise
                document = copy.deepcopy(dict(default))
            yield document
            self._write(filename, codec.encode(document))

    # -- the session as a whole -----------------------------------------------------

    def exists(self, filename: str | None = None) -> bool:
        """Whether the session (or one of its files) exists."""
        if filename is None:
            return self.session_dir.is_dir()
        validate_name(filename, "filename")
        try:  # lstat: a symlink is not a session file (it could lead out of the root)
            return stat.S_ISREG(os.lstat(self.session_dir / filename).st_mode)
        except OSError:
            return False

    def list_files(self) -> list[str]:
        """The session's files, sorted; never the lock file, temp files or dot-files."""
        try:
            with os.scandir(self.session_dir) as entries:
                names = [
                    entry.name
                    for entry in entries
                    if entry.is_file(follow_symlinks=False) and is_valid_name(entry.name)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return []
        names.sort()
        return names

    def delete(self, filename: str | None = None) -> None:
        """Remove one file, or the whole session when ``filename`` is None, under the lock.

        :raises SessionNotFoundError: if the file (or session) does not exist.
        """
        if filename is not None:
            validate_name(filename, "filename")
        with self._lock_existing(filename):
            durable = self.settings.durable
            if filename is None:
                fsops.remove_tree(self.session_dir, LOCK_FILENAME, durable=durable)
            else:
                fsops.remove_file(
                    self.session_dir, filename, durable=durable, session_id=self.session_id
                )


def get_session_or_raise(session_id: str, *, settings: Settings | None = None) -> StateManager:
    """Return the StateManager of an existing session.

    :raises SessionNotFoundError: if the session does not exist.
    :raises SessionValueError: if the id is invalid.
    """
    manager = StateManager(session_id, settings=settings)
    if not manager.exists():
        raise manager._not_found(None)
    return manager


def list_sessions(*, settings: Settings | None = None) -> list[str]:
    """The ids of the sessions under the root, sorted (an absent root has none)."""
    root = (settings if settings is not None else current_settings()).root
    try:
        with os.scandir(root) as entries:
            ids = [
                entry.name
                for entry in entries
                if entry.is_dir(follow_symlinks=False) and is_valid_name(entry.name)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    ids.sort()
    return ids
