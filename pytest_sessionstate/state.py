"""StateManager: one session's directory of JSON files, locked, atomic and durable.

Grew out of the original ``state_manager.py``; the methods keep its names and
behaviour on a good day, and hold on a bad one: a killed holder never blocks
the lock, a crash mid-write leaves the old or the new document, and bad input
raises a clear error before anything on disk is touched.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from . import codec, fsops, probes
from .config import Settings, current_settings, to_seconds
from .dotpath import apply_parsed, parse_updates
from .errors import SessionNotFoundError, SessionValueError
from .jsontypes import JSONObject, Updates
from .lockcontext import LockContext, current_owner
from .locking import existing_lock
from .names import is_valid_name, validate_name
from .probes import ProbeEvent

__all__ = ["LOCK_FILENAME", "StateManager", "get_session_or_raise", "list_sessions"]

#: Name of the lock file inside each session directory.
LOCK_FILENAME = fsops.LOCK_NAME


class StateManager:
    """Atomic, durable, locked access to the JSON files of one session.

    :param session_id: the session's id (see :func:`~pytest_sessionstate.names.validate_name`).
    :param settings: where and how to store it; by default the settings in force
        (:func:`~pytest_sessionstate.use_settings`, else the module default).
    :raises SessionValueError: if the id is invalid or its path is a symlink.

    Making a StateManager touches nothing on disk and keeps no descriptor open;
    the session directory is created by the first write.  Every operation
    reaches the session through directory descriptors, never through a symlink.
    """

    __slots__ = ("lock_file", "session_dir", "session_id", "settings")

    def __init__(self, session_id: str, *, settings: Settings | None = None) -> None:
        if settings is not None and not isinstance(settings, Settings):
            raise TypeError(f"settings must be a Settings, not {type(settings).__name__}")
        self.settings: Settings = settings if settings is not None else current_settings()
        session_id = validate_name(session_id, "session id")  # an exact str from here on
        self.session_dir: Path = self.settings.get_session_path(session_id)
        self.session_id: str = session_id
        self.lock_file: Path = self.session_dir / LOCK_FILENAME

    def __repr__(self) -> str:
        return f"StateManager({self.session_id!r}, settings={self.settings!r})"

    # -- locking -----------------------------------------------------------------

    def lock(self, timeout: float | None = None) -> LockContext:
        """Hold the session's exclusive lock for a ``with`` block.

        :param timeout: seconds to wait; None for ``settings.lock_timeout``, ``0`` for
            a single attempt, a negative number to wait forever.  Measured on a real
            clock, also under freezegun.
        :raises SessionLockError: if the lock is not acquired in time; its ``details``
            hold ``session_id``, ``timeout`` and ``root``.

        Excludes other processes and other threads; re-entrant for the thread that
        holds it, through any StateManager of the session (any path to it).
        Creates the session directory if needed.  In async code use
        :class:`~pytest_sessionstate.AsyncStateManager`: a second asyncio task of the
        same thread entering this lock gets a :class:`SessionLockError`.
        """
        seconds = self.settings.lock_timeout if timeout is None else to_seconds(timeout, "timeout")
        return LockContext(self, seconds)

    def _lock_creating(self) -> LockContext:
        """``lock()`` for a write that may create the session: if the write fails on a
        session that entering the lock created, the session is removed again, so a
        failed write leaves no empty session behind."""
        return LockContext(self, self.settings.lock_timeout, discard_new=True)

    def _lock_existing(self, filename: str | None) -> LockContext:
        """``lock()`` for an operation on what exists: a missing session is not created
        but reported as :class:`SessionNotFoundError` (for ``filename``)."""
        return LockContext(
            self, self.settings.lock_timeout, missing=lambda: self._not_found(filename)
        )

    def _open_dir(self) -> int | None:
        """A descriptor of the session directory (None if the session does not exist),
        reached from the root without following a symlink."""
        try:
            return fsops.open_session(str(self.session_dir), create=False)[0]
        except FileNotFoundError:
            return None

    # -- reading -------------------------------------------------------------------

    def _not_found(self, filename: str | None) -> SessionNotFoundError:
        root = str(self.settings.root)
        if filename is None:
            return SessionNotFoundError(
                f"session not found: {self.session_id!r} (root {root!r})",
                details={"session_id": self.session_id, "root": root},
            )
        return SessionNotFoundError(
            f"file not found: {filename!r} in session {self.session_id!r} (root {root!r})",
            details={"session_id": self.session_id, "filename": filename, "root": root},
        )

    def _read(self, filename: str, dir_fd: int = -1) -> JSONObject:
        """The document (fresh, exact JSON: see :func:`codec.decode`).

        :param dir_fd: the locked session directory; -1 to open it (a lock-free read).
        """
        path = os.path.join(self.session_dir, filename)
        if dir_fd >= 0:
            data = self._read_at(dir_fd, filename, path)
        else:
            opened = self._open_dir()
            if opened is None:
                raise self._not_found(filename)
            try:
                data = self._read_at(opened, filename, path)
            finally:
                os.close(opened)
        document = codec.decode(data, source=f"{self.session_id}/{filename}")
        if probes.listeners:
            probes.emit(
                ProbeEvent("read", self.session_dir, filename, durable=self.settings.durable)
            )
        return document

    def _read_at(self, dir_fd: int, filename: str, path: str) -> bytes:
        try:
            return fsops.read_file(dir_fd, filename, path)
        except FileNotFoundError:
            raise self._not_found(filename) from None

    def read_json(self, filename: str) -> JSONObject:
        """Return the JSON object stored in ``filename``.

        :raises SessionNotFoundError: if the file does not exist.
        :raises SessionCorruptError: if it is not valid UTF-8 JSON or not an object.
        :raises SessionValueError: if it is not a regular file (a symlink, a FIFO, a
            directory...), or the session path is not a directory.
        """
        filename = validate_name(filename, "filename")
        return self._read(filename)

    # -- writing -------------------------------------------------------------------

    def _write(self, held: LockContext, filename: str, data: bytes) -> None:
        held.lock.delete_pending = False  # a write after delete() makes the session anew
        fsops.write_file(
            held.dir_fd, self.session_dir, filename, data, durable=self.settings.durable
        )

    def write_json(self, filename: str, data: Mapping[str, Any]) -> None:
        """Replace ``filename`` with ``data``, atomically and (by default) durably.

        Readers see the old or the new document, never a mix.  With durable
        settings the data is on disk when this returns.

        :raises SessionValueError: if ``data`` is not a JSON object (naming the
            offending path); nothing is written.
        :raises SessionLockError: if the lock is not acquired in time.
        :raises OSError: if the disk fails; the previous document is intact.
        """
        filename = validate_name(filename, "filename")
        if isinstance(data, Mapping) and not isinstance(data, dict):
            data = dict(data)  # any Mapping is an object (MappingProxyType, UserDict...)
        encoded = codec.encode(data)
        held = self._lock_creating()
        with held:
            self._write(held, filename, encoded)

    def update_json(self, filename: str, updates: Updates) -> JSONObject:
        """Apply dot-path ``updates`` to ``filename`` under one lock; return the new document.

        ``{"workflow_progress.initialize": "completed"}`` sets
        ``doc["workflow_progress"]["initialize"]``, creating missing objects.
        Keys may also be tuples of segments; see :mod:`pytest_sessionstate.dotpath`.

        :raises SessionNotFoundError: if the file does not exist.
        :raises SessionValueError: for a malformed path, a path through a value that is
            not an object, or a value that is not JSON; the file is unchanged.
        """
        filename = validate_name(filename, "filename")
        # Exact copies of the new values, checked before the disk is touched: the
        # decoded document is exact JSON too, so the result needs no census and what
        # is written is what was checked (a value's own methods are never called).
        parsed = [
            (segments, codec.normalize(value, at=segments))
            for segments, value in parse_updates(cast("Mapping[Any, Any]", updates))
        ]
        held = self._lock_existing(filename)
        with held:
            document = apply_parsed(self._read(filename, held.dir_fd), parsed)
            self._write(held, filename, codec.encode(document, validated=True))
        return document

    @contextmanager
    def transaction(
        self, filename: str, *, default: Mapping[str, Any] | None = None
    ) -> Iterator[JSONObject]:
        """Read, change in place, write back, all under the lock.

        On normal exit the dict is written atomically; on exception nothing is (a
        session that the transaction created is removed again).

        :param default: the document to start from (an exact deep copy, see
            :func:`codec.normalize`) if the file is missing; without it a missing file
            raises :class:`SessionNotFoundError`.
        :raises SessionValueError: if ``default`` (when used) or the dict at exit is not
            JSON; nothing is written.
        """
        filename, held = self._transaction_lock(filename, default)
        with held:
            document = self._transaction_start(held, filename, default)
            yield document
            self._transaction_commit(held, filename, document)

    def _transaction_lock(
        self, filename: str, default: Mapping[str, Any] | None
    ) -> tuple[str, LockContext]:
        """Validate a transaction's arguments: the filename to use, and the lock to take
        (one that may create the session when there is a default)."""
        filename = validate_name(filename, "filename")
        if default is not None and not isinstance(default, Mapping):
            raise SessionValueError(
                f"default must be a JSON object, not {type(default).__name__}",
                details={"type": type(default).__name__},
            )
        held = self._lock_creating() if default is not None else self._lock_existing(filename)
        return filename, held

    def _transaction_start(
        self, held: LockContext, filename: str, default: Mapping[str, Any] | None
    ) -> JSONObject:
        """The document a transaction starts from (lock held)."""
        try:
            return self._read(filename, held.dir_fd)
        except SessionNotFoundError:
            if default is None:
                raise
            # An exact deep copy, iterative: a default nested too deeply (or not
            # JSON) is a SessionValueError, and the new session is removed again.
            start: JSONObject = codec.normalize(dict(default))
            return start

    def _transaction_commit(self, held: LockContext, filename: str, document: JSONObject) -> None:
        """Write a transaction's document back (lock held)."""
        self._write(held, filename, codec.encode(document))

    # -- the session as a whole -----------------------------------------------------

    def exists(self, filename: str | None = None) -> bool:
        """Whether the session (or one of its files, a regular file) exists.

        Never raises for what it finds: a symlink, a FIFO or a directory in a
        file's place, or anything but a directory at the session's path, does not
        count as existing.
        """
        if filename is not None:
            filename = validate_name(filename, "filename")
        try:
            dir_fd = self._open_dir()
        except SessionValueError:
            return False
        if dir_fd is None:
            return False
        try:
            if filename is not None:
                return fsops.entry_kind(dir_fd, filename) == "a regular file"
            if fsops.is_unborn(dir_fd, is_valid_name):
                return False  # what a killed first write left: not a session
            info = os.fstat(dir_fd)
        finally:
            os.close(dir_fd)
        # A delete() inside this thread's nested lock block is already done for us.
        lock = existing_lock((info.st_dev, info.st_ino))
        return not (lock is not None and lock.delete_pending and lock.owner() == current_owner())

    def list_files(self) -> list[str]:
        """The session's files, sorted; never the lock file, temp files or dot-files, nor
        anything that is not a regular file."""
        try:
            dir_fd = self._open_dir()
        except SessionValueError:
            return []
        if dir_fd is None:
            return []
        try:
            return fsops.list_documents(dir_fd, is_valid_name)
        finally:
            os.close(dir_fd)

    def delete(self, filename: str | None = None) -> None:
        """Remove one file, or the whole session when ``filename`` is None, under the lock.

        A whole session is renamed away first (readers see all of it or none), then
        removed.  Inside a held :meth:`lock` block, the session is emptied at once
        and its directory goes when the outermost block exits, so the block keeps
        excluding others to its end; a write in the block after the delete makes
        the session anew (and it stays).

        :raises SessionNotFoundError: if the file (or session) does not exist.
        :raises SessionValueError: if ``filename`` is not a regular file.
        """
        if filename is not None:
            filename = validate_name(filename, "filename")
        held = self._lock_existing(filename)
        with held:
            if filename is None:
                if held.lock.delete_pending:
                    raise self._not_found(None)
                held.remove_session()
                return
            try:
                fsops.remove_file(
                    held.dir_fd, self.session_dir, filename, durable=self.settings.durable
                )
            except FileNotFoundError:
                raise self._not_found(filename) from None


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
    """The ids of the sessions under the root, sorted (an absent root has none).

    Only real directories count: never a symlink, a file, a tombstone of a
    deleted session, what a killed first write left (see :meth:`StateManager.exists`)
    or anything else whose name is not a valid id.
    """
    root = (settings if settings is not None else current_settings()).root
    try:
        root_fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return []
    try:
        with os.scandir(root_fd) as entries:
            ids = [
                entry.name
                for entry in entries
                if entry.is_dir(follow_symlinks=False) and is_valid_name(entry.name)
            ]
        ids = [session_id for session_id in ids if not _is_unborn_at(root_fd, session_id)]
    finally:
        os.close(root_fd)
    ids.sort()
    return ids


def _is_unborn_at(root_fd: int, session_id: str) -> bool:
    """:func:`fsops.is_unborn` for a session of the root open as ``root_fd`` (False if
    it is no longer a directory there: gone is not listed either way)."""
    try:
        dir_fd = os.open(session_id, fsops.SUBDIR_FLAGS, dir_fd=root_fd)
    except OSError:
        return True  # deleted (or swapped for something else) since the listing
    try:
        return fsops.is_unborn(dir_fd, is_valid_name)
    finally:
        os.close(dir_fd)
