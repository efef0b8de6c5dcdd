"""A read-only check of a session root: everything that is not as the state manager leaves it.

What SQLite's ``PRAGMA integrity_check`` or ``git fsck`` are to their stores,
:func:`check_root` is to a root of sessions.  It reports (see :data:`KINDS`)
documents that are not strict JSON objects, temp files orphaned by a killed
writer, entries that are not regular files where a file belongs, symlinks,
modes wider than ``0600`` (files) or ``0700`` (directories), entries owned by
another user than the root's owner, names the state manager never uses, and
sessions without documents.  It also lists the locks held right now, with the
holder's pid from ``/proc/locks`` (normal operation: shown, never a finding).

The check takes no lock and creates nothing, not even a lock file.  It never
follows a symlink below the root and never blocks on what it finds: every entry
is ``lstat``-ed before it is opened, only regular files are opened, and then
with ``O_NONBLOCK | O_NOFOLLOW`` and checked again with ``fstat`` (so a FIFO
swapped in meanwhile cannot hang it, a symlink cannot lead it out of the root).
Directories are read through their descriptors (``dir_fd``), so a session
directory swapped for a symlink mid-check is never followed either.

A temp file is *orphaned* only if its session's lock is free: a writer creates
its temp file under the lock, so one seen while the lock is held may belong to a
write in progress.  The check lists the directory first and reads the locks
after; a temp file that was there before a moment when the lock was free, and is
still there after it, was left by a writer that died.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import fsops

# Everything the checker takes from the state manager, in one place: the names it
# gives files and the strict decoder it reads them with.
from .codec import decode_checked
from .errors import SessionCorruptError, SessionValueError
from .fsops import UNBORN_NAME, article, is_temp_name, kind_of
from .names import is_valid_name
from .proclocks import command_of, file_key, read_locks
from .state import LOCK_FILENAME

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "KINDS",
    "LOCK_FILENAME",
    "CheckReport",
    "Finding",
    "Holder",
    "RootError",
    "SessionInfo",
    "check_root",
    "is_temp_name",
    "is_valid_name",
    "article",
    "open_root",
    "type_of",
]

#: The widest mode of a session file (documents and the lock file): what the state
#: manager creates them with (``DIR_MODE``: of a session directory).
FILE_MODE = fsops.FILE_MODE
DIR_MODE = fsops.DIR_MODE

#: Every kind of finding, and what it means.
KINDS: dict[str, str] = {
    "corrupt": "a document that is not a strict (RFC 8259) UTF-8 JSON object",
    "orphaned-temp": "a temp file left by a writer that died (``repair`` removes it)",
    "not-regular": "a directory, FIFO, socket or device where a file belongs",
    "not-a-directory": "an entry that is not a directory where a session belongs",
    "symlink": "a symlink (the state manager never follows one below the root)",
    "mode": "a mode wider than 0600 (files) or 0700 (directories), or a root others may write",
    "owner": "an entry owned by another user than the root directory's owner",
    "stray": "a name the state manager never uses (it ignores the entry)",
    "unreadable": "an entry the check could not read (the error says why)",
    "empty-session": "a session without documents, not in use (``repair`` removes it)",
}

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)
_NOATIME = getattr(os, "O_NOATIME", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_ROOT_FLAGS = os.O_RDONLY | _DIRECTORY | _CLOEXEC
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _NONBLOCK | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _NOCTTY | _CLOEXEC


class RootError(SessionValueError):
    """The root cannot be used: it does not exist, is not a directory, or cannot be opened."""


@dataclass(frozen=True)
class Finding:
    """One thing in the root that is not as the state manager leaves it.

    :param kind: one of :data:`KINDS`.
    :param path: where, relative to the root, ``/``-separated (``.`` is the root).
    :param message: what is wrong, for people.
    :param session_id: the session it is in (None at the root's level).
    :param details: the facts, for programs (``mode``, ``problem``, ``type``...).
    """

    kind: str
    path: str
    message: str
    session_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object (see :doc:`/cli` for the schema)."""
        return {
            "kind": self.kind,
            "path": self.path,
            "session_id": self.session_id,
            "message": self.message,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Holder:
    """A process that holds (or waits for) a session's lock right now.

    :param pid: its pid; None if the kernel does not show it (another PID namespace).
    :param command: its command name (``/proc/PID/comm``), when readable.
    :param kind: the kind of lock (``FLOCK`` for the state manager's lock).
    :param access: ``WRITE`` (exclusive) or ``READ`` (shared).
    :param waiting: True for a process queued for the lock.
    """

    session_id: str
    pid: int | None
    command: str | None
    kind: str
    access: str
    waiting: bool

    def to_json(self) -> dict[str, Any]:
        """The holder as a JSON object."""
        return {
            "session_id": self.session_id,
            "path": f"{self.session_id}/{LOCK_FILENAME}",
            "pid": self.pid,
            "command": self.command,
            "kind": self.kind,
            "access": self.access,
            "waiting": self.waiting,
        }


@dataclass
class SessionInfo:
    """What the check saw in one session directory.

    :param documents: the documents (files with valid names, corrupt or not), sorted.
    :param temps: temp files of the write protocol, orphaned or in flight.
    :param others: every other entry but the lock file (strays, FIFOs, symlinks...).
    :param locked: whether its lock is held right now; None if that cannot be seen.
    :param unborn: whether it holds the marker of a first write not completed
        (without documents, it is then no session for ``exists()`` and
        ``list_sessions``: a first write in progress, or debris of a killed one).
    """

    session_id: str
    documents: list[str] = field(default_factory=list)
    temps: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    locked: bool | None = None
    lock_key: tuple[int, int, int] | None = field(default=None, repr=False)
    unborn: bool = False

    @property
    def empty(self) -> bool:
        """Whether the session holds no document."""
        return not self.documents

    def to_json(self) -> dict[str, Any]:
        """The session as a JSON object."""
        return {
            "session_id": self.session_id,
            "documents": list(self.documents),
            "empty": self.empty,
            "locked": self.locked,
            "unborn": self.unborn,
        }


@dataclass
class CheckReport:
    """The result of :func:`check_root`.

    :param root: the root checked (absolute).
    :param owner: the uid that owns the root, which every entry should have.
    :param locks_visible: whether the locks' holders could be read (``/proc/locks``).
    """

    root: Path
    owner: int
    sessions: list[SessionInfo] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    holders: list[Holder] = field(default_factory=list)
    locks_visible: bool = False

    @property
    def clean(self) -> bool:
        """Whether nothing was found (held locks are not findings)."""
        return not self.findings

    @property
    def documents(self) -> int:
        """How many documents the root holds."""
        return sum(len(session.documents) for session in self.sessions)

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON object (see :doc:`/cli` for the schema)."""
        return {
            "version": 1,
            "root": str(self.root),
            "clean": self.clean,
            "owner": self.owner,
            "counts": {
                "sessions": len(self.sessions),
                "documents": self.documents,
                "findings": len(self.findings),
            },
            "findings": [finding.to_json() for finding in self.findings],
            "locks_visible": self.locks_visible,
            "locks": [holder.to_json() for holder in self.holders],
            "sessions": [session.to_json() for session in self.sessions],
        }


#: What a ``st_mode`` is, in words: the state manager's own vocabulary.
type_of = kind_of


@contextlib.contextmanager
def open_root(root: str | os.PathLike[str]) -> Iterator[int]:
    """Open the root directory (following a symlink to it: it is the operator's choice).

    :raises RootError: if it does not exist, is not a directory or cannot be opened.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(root)))
    try:
        fd = os.open(path, _ROOT_FLAGS)
    except ValueError as exc:  # an embedded NUL
        raise RootError(
            f"root {path!r} is not a usable path: {exc}",
            details={"root": path, "problem": str(exc)},
        ) from None
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            problem = "does not exist"
        elif exc.errno == errno.ENOTDIR:
            problem = "is not a directory"
        else:
            problem = f"cannot be opened: {exc.strerror}"
        raise RootError(
            f"root {path!r} {problem}", details={"root": path, "problem": problem}
        ) from None
    try:
        yield fd
    finally:
        os.close(fd)


class _Scanner:
    """One pass over a root; collects findings and sessions."""

    def __init__(self, root: Path, root_fd: int) -> None:
        self.root_fd = root_fd
        info = os.fstat(root_fd)
        self.report = CheckReport(root=root, owner=info.st_uid)
        self.pending_temps: list[tuple[SessionInfo, str]] = []
        if stat.S_IMODE(info.st_mode) & 0o022:
            self._find(
                "mode",
                ".",
                f"the root is writable by {_writers(info.st_mode)} "
                f"(mode {stat.S_IMODE(info.st_mode):04o}): they can add, remove or swap sessions",
                mode=f"{stat.S_IMODE(info.st_mode):04o}",
            )

    def _find(
        self, kind: str, path: str, message: str, session_id: str | None = None, **details: Any
    ) -> None:
        self.report.findings.append(Finding(kind, path, message, session_id, details))

    def _unreadable(self, path: str, exc: OSError, session_id: str | None) -> None:
        self._find(
            "unreadable",
            path,
            f"cannot be read: {exc.strerror or exc}",
            session_id,
            errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
        )

    def _check_owner_and_mode(
        self, path: str, info: os.stat_result, widest: int, session_id: str | None
    ) -> None:
        mode = stat.S_IMODE(info.st_mode)
        if mode & ~widest:
            self._find(
                "mode",
                path,
                f"mode {mode:04o} is wider than {widest:04o}",
                session_id,
                mode=f"{mode:04o}",
                widest=f"{widest:04o}",
            )
        if info.st_uid != self.report.owner:
            self._find(
                "owner",
                path,
                f"owned by uid {info.st_uid}, not by the root's owner (uid {self.report.owner})",
                session_id,
                uid=info.st_uid,
                expected_uid=self.report.owner,
            )

    def _symlink(self, dir_fd: int, name: str, path: str, session_id: str | None) -> None:
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            target = "?"
        self._find(
            "symlink",
            path,
            f"a symlink (to {target!r}); the state manager never follows one",
            session_id,
            target=target,
        )

    def scan(self) -> None:
        for name in sorted(os.listdir(self.root_fd)):
            try:
                info = os.stat(name, dir_fd=self.root_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed meanwhile (a session deleted by the app)
            except OSError as exc:
                self._unreadable(name, exc, None)
                continue
            if stat.S_ISLNK(info.st_mode):
                self._symlink(self.root_fd, name, name, None)
            elif not is_valid_name(name):
                self._find(
                    "stray",
                    name,
                    f"{article(type_of(info.st_mode))} whose name is not a valid session id;"
                    " the state manager ignores it",
                )
            elif not stat.S_ISDIR(info.st_mode):
                self._find(
                    "not-a-directory",
                    name,
                    f"{article(type_of(info.st_mode))} where a session directory belongs",
                    type=type_of(info.st_mode),
                )
            else:
                self._scan_session(name)

    def _scan_session(self, session_id: str) -> None:
        try:
            fd = os.open(session_id, _DIR_FLAGS, dir_fd=self.root_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped since the lstat
                self._find("symlink", session_id, "replaced by a non-directory during the check")
            else:
                self._unreadable(session_id, exc, session_id)
            return
        session = SessionInfo(session_id)
        self.report.sessions.append(session)
        try:
            self._check_owner_and_mode(session_id, os.fstat(fd), DIR_MODE, session_id)
            try:
                names = sorted(os.listdir(fd))
            except OSError as exc:
                self._unreadable(session_id, exc, session_id)
                return
            for name in names:
                self._scan_entry(session, fd, name)
        finally:
            os.close(fd)

    def _scan_entry(self, session: SessionInfo, dir_fd: int, name: str) -> None:
        session_id = session.session_id
        path = f"{session_id}/{name}"
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return  # replaced or removed meanwhile: a write or a delete in progress
        except OSError as exc:
            session.others.append(name)
            self._unreadable(path, exc, session_id)
            return
        mode = info.st_mode
        if name == LOCK_FILENAME:
            if stat.S_ISLNK(mode):
                self._find(
                    "symlink",
                    path,
                    "the lock file is a symlink: the state manager refuses it, so every"
                    " lock of this session fails",
                    session_id,
                )
            elif not stat.S_ISREG(mode):
                self._find(
                    "not-regular",
                    path,
                    f"{article(type_of(mode))} where the lock file belongs: every lock of"
                    " this session fails",
                    session_id,
                    type=type_of(mode),
                )
            else:
                session.lock_key = file_key(info)
                self._check_owner_and_mode(path, info, FILE_MODE, session_id)
            return
        if name == UNBORN_NAME and stat.S_ISREG(mode):
            # The marker of a first write not completed: the write is in progress,
            # or was killed (then, without documents, the session is empty debris).
            session.unborn = True
            return
        if stat.S_ISLNK(mode):
            session.others.append(name)
            self._symlink(dir_fd, name, path, session_id)
        elif is_temp_name(name):
            if stat.S_ISREG(mode):
                session.temps.append(name)
                self.pending_temps.append((session, name))
            else:
                session.others.append(name)
                self._find(
                    "not-regular",
                    path,
                    f"{article(type_of(mode))} with a temp file's name",
                    session_id,
                    type=type_of(mode),
                )
        elif not is_valid_name(name):
            session.others.append(name)
            self._find(
                "stray",
                path,
                f"{article(type_of(mode))} whose name the state manager never uses; it ignores it",
                session_id,
                type=type_of(mode),
            )
        elif not stat.S_ISREG(mode):
            session.others.append(name)
            self._find(
                "not-regular",
                path,
                f"{article(type_of(mode))} where a document belongs",
                session_id,
                type=type_of(mode),
            )
        else:
            session.documents.append(name)
            self._check_document(session_id, dir_fd, name, path)

    def _check_document(self, session_id: str, dir_fd: int, name: str, path: str) -> None:
        try:
            data, info = _read_regular(dir_fd, name)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._symlink(dir_fd, name, path, session_id)
            else:
                self._unreadable(path, exc, session_id)
            return
        if info is None:
            self._find(
                "not-regular", path, "replaced by a non-regular file during the check", session_id
            )
            return
        self._check_owner_and_mode(path, info, FILE_MODE, session_id)
        try:
            _, pure = decode_checked(data, source=path)
        except SessionCorruptError as exc:
            problem = str(exc)
            if problem.startswith(f"{path} "):
                problem = problem[len(path) + 1 :]
            problem = problem.removeprefix("is ")
            self._find("corrupt", path, problem, session_id, problem=problem, size=len(data))
            return
        if not pure:
            problem = "holds a number too large for a float (read as infinity: not JSON)"
            self._find("corrupt", path, problem, session_id, problem=problem, size=len(data))

    def finish(self) -> None:
        """Read the locks, then settle temps and empty sessions (see the module's docstring)."""
        locks = read_locks()
        report = self.report
        report.locks_visible = locks is not None
        for session in report.sessions:
            if locks is None:
                continue
            entries = locks.get(session.lock_key, []) if session.lock_key else []
            session.locked = any(not entry.waiting for entry in entries)
            for entry in entries:
                report.holders.append(
                    Holder(
                        session.session_id,
                        entry.pid,
                        command_of(entry.pid),
                        entry.kind,
                        entry.access,
                        entry.waiting,
                    )
                )
        for session, name in self.pending_temps:
            if session.locked:
                continue  # may be a write in progress
            path = f"{session.session_id}/{name}"
            try:
                os.stat(path, dir_fd=self.root_fd, follow_symlinks=False)
            except OSError:
                session.temps.remove(name)  # renamed by a writer that finished
                continue
            unseen = (
                ""
                if locks is not None
                else " (unless a writer is active: locks cannot be seen here)"
            )
            self._find(
                "orphaned-temp",
                path,
                f"a temp file left by a writer that died{unseen}; 'repair' removes it",
                session.session_id,
            )
        for session in report.sessions:
            if session.empty and not session.locked:
                self._find(
                    "empty-session",
                    session.session_id,
                    "a session without documents"
                    + ("; 'repair' removes it" if not session.others else ""),
                    session.session_id,
                )
        report.findings.sort(key=_finding_order)


def _writers(mode: int) -> str:
    if mode & stat.S_IWGRP and mode & stat.S_IWOTH:
        return "its group and others"
    return "its group" if mode & stat.S_IWGRP else "others"


def _finding_order(finding: Finding) -> tuple[bool, list[str]]:
    return (finding.path != ".", finding.path.split("/"))


def _read_regular(dir_fd: int, name: str) -> tuple[bytes, os.stat_result | None]:
    """Read a file that ``lstat`` said is regular; ``(b"", None)`` if it no longer is.

    ``O_NONBLOCK`` keeps a FIFO swapped in meanwhile from blocking the open,
    ``O_NOFOLLOW`` a symlink from being followed (ELOOP), ``O_NOATIME`` (where
    permitted) the check from touching even the access time.
    """
    try:
        fd = os.open(name, _FILE_FLAGS | _NOATIME, dir_fd=dir_fd)
    except PermissionError:
        if not _NOATIME:
            raise
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)  # O_NOATIME needs the file's owner
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return b"", None
        parts = []
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts), info
    finally:
        os.close(fd)


def check_root(root: str | os.PathLike[str]) -> CheckReport:
    """Check a session root without changing anything in it.

    :param root: the directory that holds the sessions.
    :returns: what was found; :attr:`CheckReport.clean` says whether nothing was.
    :raises RootError: if the root does not exist, is not a directory or cannot be opened.
    """
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
    with open_root(path) as root_fd:
        scanner = _Scanner(path, root_fd)
        try:
            scanner.scan()
        except OSError as exc:
            raise RootError(
                f"root {str(path)!r} cannot be read: {exc.strerror or exc}",
                details={"root": str(path), "problem": str(exc)},
            ) from None
        scanner.finish()
    return scanner.report
