"""The file operations of the state manager: the one seam where disk I/O happens.

Every step of a write passes its probe point (see :mod:`pytest_sessionstate.probes`)
right after it has happened, so the crash injector, the power-loss model and
``interleave`` act here and nowhere else; nothing monkeypatches :mod:`os`.

The write is the durable atomic replace (ALICE, OSDI'14): a uniquely named temp
file in the session directory (``O_EXCL | O_NOFOLLOW``), all bytes written,
fsynced, closed, ``os.replace``-d onto the target, and the directory fsynced.
Only then is the write acknowledged.  An fsync error is never retried
(PostgreSQL's "fsyncgate"): it propagates, and the temp file is removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from pathlib import Path

from . import probes
from .errors import SessionNotFoundError, SessionValueError
from .probes import ProbeEvent

__all__ = [
    "fsync_dir",
    "is_temp_name",
    "read_file",
    "remove_file",
    "remove_orphans",
    "remove_new_session",
    "remove_tree",
    "write_file",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _BINARY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
_TEMP = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")
_HAS_FCHMOD = hasattr(os, "fchmod")

#: Mode of new session files: state often holds secrets.
FILE_MODE = 0o600
#: Mode of new session directories.
DIR_MODE = 0o700


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temp file of the write protocol."""
    return _TEMP.fullmatch(name) is not None


def _temp_name(filename: str) -> str:
    # ".", ".", 16 hex digits and ".tmp" take 22 characters: cut the filename so that
    # the temp name of a 255-character filename still fits in one path component.
    return f".{filename[:233]}.{os.urandom(8).hex()}.tmp"


def fsync_dir(path: Path | str) -> None:
    """fsync a directory, making the creation, rename or removal of its entries durable."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open directories
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _not_a_file(path: Path, what: str) -> SessionValueError:
    return SessionValueError(
        f"{str(path)!r} is {what}, not a regular file; refusing to use it",
        details={"path": str(path), "problem": what},
    )


def read_file(session_dir: Path, filename: str) -> bytes:
    """Read a session file whole, never following a symlink.

    :raises FileNotFoundError: if it does not exist (the caller words the error).
    :raises SessionValueError: if it is a symlink or not a regular file.
    """
    # Paths as str on the hot path: a pathlib join costs more than the open.
    path = os.path.join(session_dir, filename)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_a_file(Path(path), "a symlink") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_a_file(Path(path), "not a regular file")
        # Session files are replaced whole, never written in place: the inode we
        # opened keeps its size, so one read usually gets it all (no buffered
        # reader, no extra read to find the end).
        data = os.read(fd, info.st_size + 1)
        if len(data) == info.st_size:
            return data
        parts = [data]
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def remove_orphans(session_dir: Path) -> None:
    """Remove temp files left by writers that were killed mid-write.

    Called with the lock held, when no other writer can own a temp file.
    """
    with os.scandir(session_dir) as entries:
        for entry in entries:
            if entry.name[0] == "." and _TEMP.fullmatch(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)


def write_file(session_dir: Path, filename: str, data: bytes, *, durable: bool) -> None:
    """Replace ``session_dir / filename`` with ``data``, atomically (and durably).

    A file that exists keeps its mode; a new one is created ``0600``.  On any
    error before the rename the temp file is removed and the old file is intact.
    """
    emit = probes.emit if probes.listeners else None
    # Paths as str on the hot path (a pathlib join costs more than the syscall it
    # names); the probe events get a Path.
    directory = os.fspath(session_dir)
    target = os.path.join(directory, filename)
    try:
        existing = os.stat(target, follow_symlinks=False)
    except FileNotFoundError:
        mode = FILE_MODE
    else:
        if stat.S_ISLNK(existing.st_mode):
            raise _not_a_file(Path(target), "a symlink")  # refused before anything is touched
        mode = stat.S_IMODE(existing.st_mode)
    remove_orphans(session_dir)
    temp = os.path.join(directory, _temp_name(filename))
    temp_path = Path(temp) if emit else None
    fd = os.open(temp, _CREATE_FLAGS, FILE_MODE)
    try:
        try:
            if _HAS_FCHMOD:
                os.fchmod(fd, mode)  # exact mode, whatever the umask
            if emit:
                emit(ProbeEvent("temp-created", session_dir, filename, temp_path, durable=durable))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if emit:
                emit(
                    ProbeEvent(
                        "temp-written", session_dir, filename, temp_path, data, durable=durable
                    )
                )
            if durable:
                os.fsync(fd)
                if emit:
                    emit(
                        ProbeEvent("temp-synced", session_dir, filename, temp_path, durable=durable)
                    )
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if emit:
        emit(ProbeEvent("replaced", session_dir, filename, temp_path, durable=durable))
    if durable:
        fsync_dir(session_dir)
        if emit:
            emit(ProbeEvent("dir-synced", session_dir, filename, durable=durable))


def remove_file(session_dir: Path, filename: str, *, durable: bool, session_id: str) -> None:
    """Unlink one session file (durably).

    :raises SessionNotFoundError: if it does not exist.
    """
    path = session_dir / filename
    try:
        os.unlink(path)
    except FileNotFoundError:
        raise SessionNotFoundError(
            f"file not found: {filename!r} in session {session_id!r}",
            details={"session_id": session_id, "filename": filename},
        ) from None
    emit = probes.emit if probes.listeners else None
    if emit:
        emit(ProbeEvent("removed", session_dir, filename, durable=durable))
    if durable:
        fsync_dir(session_dir)
        if emit:
            emit(ProbeEvent("dir-synced", session_dir, filename, durable=durable))


def remove_new_session(session_dir: Path, lock_name: str) -> None:
    """Undo the creation of a session whose first write failed (lock held).

    Removes the directory only if it holds nothing but its lock file; passes no
    probe point (this is the clean-up of a failure, not a step of a write).
    """
    with contextlib.suppress(OSError):
        if os.listdir(session_dir) == [lock_name]:
            os.unlink(os.path.join(session_dir, lock_name))
            os.rmdir(session_dir)


def remove_tree(session_dir: Path, lock_name: str, *, durable: bool) -> None:
    """Remove a whole session directory, its lock file last.

    Called with the lock held.  Waiters on the old lock file notice that it was
    deleted and start over on a new one.
    """
    with os.scandir(session_dir) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        if name == lock_name:
            continue
        path = session_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            os.unlink(path)
    emit = probes.emit if probes.listeners else None
    os.unlink(session_dir / lock_name)
    os.rmdir(session_dir)
    if emit:
        emit(ProbeEvent("removed", session_dir, None, durable=durable))
    if durable:
        fsync_dir(session_dir.parent)
        if emit:
            emit(ProbeEvent("dir-synced", session_dir, None, durable=durable))
