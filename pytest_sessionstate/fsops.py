"""The file operations of the state manager: the one seam where disk I/O happens.

Every operation works relative to directory descriptors: the root is opened by
its path (the root is the user's choice, symlinks included), and everything
below it through ``dir_fd=`` calls with ``O_NOFOLLOW``, so swapping a session
directory or a file for a symlink at any moment never leads a read, a write, a
delete or the lock out of the root.  Only regular files are read or replaced:
a FIFO, a device or a directory in a session file's place is refused at once
(opens are non-blocking, so a FIFO cannot hang the caller).

Every step of a write passes its probe point (see :mod:`pytest_sessionstate.probes`)
right after it has happened, so the crash injector, the power-loss model and
``interleave`` act here and nowhere else; nothing monkeypatches :mod:`os`.

The write is the durable atomic replace (ALICE, OSDI'14): a uniquely named temp
file in the session directory (``O_EXCL | O_NOFOLLOW``), all bytes written,
fsynced, closed, ``os.replace``-d onto the target, and the directory fsynced.
Only then is the write acknowledged.  An fsync error is never retried
(PostgreSQL's "fsyncgate"): it propagates, and the temp file is removed.

A whole session is removed by renaming its directory to a hidden *tombstone*
first (one atomic step: a killed delete leaves the whole session or none of it),
then emptying the tombstone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

from . import probes
from .errors import SessionValueError
from .probes import ProbeEvent

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "LOCK_NAME",
    "SUBDIR_FLAGS",
    "UNBORN_NAME",
    "clear_unborn",
    "entry_kind",
    "fsync_dir",
    "is_temp_name",
    "is_tombstone_name",
    "is_unborn",
    "kind_of",
    "list_documents",
    "make_dirs",
    "mark_unborn",
    "lock_file_is",
    "open_lock_file",
    "open_session",
    "read_file",
    "remove_documents",
    "remove_file",
    "remove_orphans",
    "remove_session",
    "same_entry",
    "write_file",
]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _BINARY
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | _BINARY
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _CLOEXEC
_SUBDIR_FLAGS = _DIR_FLAGS | _NOFOLLOW
#: Flags to open a session directory below an open root, never through a symlink.
SUBDIR_FLAGS = _SUBDIR_FLAGS
# The lock file is opened read-only: flock needs no write access, so lock() and
# reads also work on a read-only mount.  Non-blocking: a FIFO cannot hang us.
_LOCK_FLAGS = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC | _BINARY
_TEMP = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")
_TOMBSTONE = re.compile(r"\..+\.[0-9a-f]{16}\.deleted")
_HAS_FCHMOD = hasattr(os, "fchmod")

#: Mode of new session files: state often holds secrets.
FILE_MODE = 0o600
#: Mode of every directory the state manager creates (the root's parents included).
DIR_MODE = 0o700
#: Name of the lock file inside each session directory.
LOCK_NAME = ".lock"
#: Name of the marker of a session whose first write has not completed: made
#: with the directory by a write that creates the session, removed once that
#: write's file is in place.  A directory holding it (or no lock file) and no
#: document is debris of a killed first write, not a session (see
#: :func:`is_unborn`).
UNBORN_NAME = ".creating"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temp file of the write protocol."""
    return _TEMP.fullmatch(name) is not None


def is_tombstone_name(name: str) -> bool:
    """Whether ``name`` is a session directory being deleted (see :func:`remove_session`)."""
    return _TOMBSTONE.fullmatch(name) is not None


def _temp_name(filename: str) -> str:
    # ".", ".", 16 hex digits and ".tmp" take 22 characters: cut the filename so that
    # the temp name of a 255-character filename still fits in one path component.
    return f".{filename[:233]}.{os.urandom(8).hex()}.tmp"


def _not_a_file(path: str, what: str) -> SessionValueError:
    return SessionValueError(
        f"{path!r} is {what}, not a regular file; refusing to use it",
        details={"path": path, "problem": what},
    )


def _not_a_dir(path: str, what: str) -> SessionValueError:
    return SessionValueError(
        f"session path {path!r} is {what}, not a directory; refusing to use it",
        details={"path": path, "problem": what},
    )


def kind_of(mode: int) -> str:
    """What a ``st_mode`` is, in words (``"FIFO"``, ``"directory"``...)."""
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "regular file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "entry of unknown type"  # pragma: no cover - no other kinds on Linux


def article(noun: str) -> str:
    """``noun`` with its indefinite article."""
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _describe(mode: int) -> str:
    return article(kind_of(mode))


# -- directories ---------------------------------------------------------------------


def make_dirs(path: str) -> None:
    """Create ``path`` and its missing parents, each exactly ``0700`` whatever the umask.

    Directories that exist are left as they are (the root's own mode is the user's).
    """
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:  # pragma: no cover - the filesystem root always exists
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            continue
        with contextlib.suppress(OSError):  # pragma: no branch
            os.chmod(directory, DIR_MODE, follow_symlinks=False)


def open_session(path: str, *, create: bool) -> tuple[int, bool]:
    """Open a session directory, never through a symlink in its place.

    ``path`` is ``root/session_id``: the root is resolved as the user configured
    it (symlinks included), the session's own entry is opened with
    ``O_NOFOLLOW | O_DIRECTORY``, and everything below it goes through the
    returned descriptor.

    :param create: make it (``0700``, and the root with its parents) if missing.
    :returns: the directory's descriptor, and whether this call created it.
    :raises FileNotFoundError: if it (or the root) is missing and ``create`` is false.
    :raises SessionValueError: if the session path is a symlink or not a directory,
        or the root is not a directory.
    """
    while True:
        try:
            return os.open(path, _SUBDIR_FLAGS), False
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            try:
                info = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                continue  # it went away meanwhile: try again
            except NotADirectoryError:
                root = os.path.dirname(path)
                raise SessionValueError(
                    f"root {root!r} is not a directory",
                    details={"root": root, "problem": "not a directory"},
                ) from None
            raise _not_a_dir(path, _describe(info.st_mode)) from None
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            continue
        except FileNotFoundError:  # no root yet
            make_dirs(os.path.dirname(path))
            continue
        try:
            fd = os.open(path, _SUBDIR_FLAGS)
        except FileNotFoundError:
            continue  # deleted (or moved) by another process meanwhile: start over
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(path)  # leave no empty session behind
            raise
        if _HAS_FCHMOD:
            try:
                os.fchmod(fd, DIR_MODE)  # exact mode, whatever the umask
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.rmdir(path)
                raise
        return fd, True


def same_entry(path: str, info: os.stat_result, dir_fd: int | None = None) -> bool:
    """Whether ``path`` (relative to ``dir_fd`` if given) still is the file ``info``
    describes: not moved, deleted or replaced."""
    try:
        now = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return (now.st_ino, now.st_dev) == (info.st_ino, info.st_dev)


def fsync_dir(path: Path | str | int) -> None:
    """fsync a directory (a path or an open descriptor), making the creation, rename or
    removal of its entries durable."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open directories
        return
    if isinstance(path, int):
        os.fsync(path)
        return
    fd = os.open(path, _DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_lock_file(dir_fd: int, path: str) -> tuple[int, tuple[int, int]]:
    """Open (creating it if needed) the session's lock file, read-only.

    :param path: the lock file's path, for messages.
    :returns: the descriptor and the file's ``(st_dev, st_ino)``.
    :raises SessionValueError: if it is a symlink or not a regular file.
    """
    try:
        try:
            fd = os.open(LOCK_NAME, _LOCK_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            fd = os.open(LOCK_NAME, _LOCK_FLAGS | os.O_CREAT, FILE_MODE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise _not_a_file(path, "a symlink") from None
    try:
        info = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise _not_a_file(path, _describe(info.st_mode))
    return fd, (info.st_dev, info.st_ino)


def lock_file_is(dir_fd: int, identity: tuple[int, int]) -> bool:
    """Whether the session's lock file still is the file ``identity`` names."""
    try:
        now = os.stat(LOCK_NAME, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == identity


# -- files ---------------------------------------------------------------------------


def entry_kind(dir_fd: int, name: str) -> str | None:
    """What ``name`` is in the directory: None if absent, else :func:`_describe`'s words."""
    try:
        return _describe(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return None


def read_file(dir_fd: int, filename: str, path: str) -> bytes:
    """Read a session file whole, never following a symlink, never blocking on a FIFO.

    :param path: the file's path, for messages.
    :raises FileNotFoundError: if it does not exist (the caller words the error).
    :raises SessionValueError: if it is a symlink or not a regular file.
    """
    try:
        fd = os.open(filename, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_a_file(path, "a symlink") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):  # a FIFO/socket, a directory
            kind = entry_kind(dir_fd, filename)
            if kind is not None:
                raise _not_a_file(path, kind) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_a_file(path, _describe(info.st_mode))
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


def list_documents(dir_fd: int, is_valid: Callable[[str], bool]) -> list[str]:
    """The regular files of the directory whose names ``is_valid`` accepts, sorted."""
    with os.scandir(dir_fd) as entries:
        names = [
            entry.name
            for entry in entries
            if entry.is_file(follow_symlinks=False) and is_valid(entry.name)
        ]
    names.sort()
    return names


def mark_unborn(dir_fd: int, *, durable: bool) -> None:
    """Mark a session directory just made by a first write (see :data:`UNBORN_NAME`).

    Durably (when ``durable``) before anything else is made in it: a power cut
    can then never keep the lock file without the marker.
    """
    try:
        os.close(os.open(UNBORN_NAME, _CREATE_FLAGS, FILE_MODE, dir_fd=dir_fd))
    except FileExistsError:
        # Marked already: the directory we made was deleted and made again, by
        # another first write, between our mkdir and our open of it.
        return
    if durable:
        fsync_dir(dir_fd)


def clear_unborn(dir_fd: int) -> None:
    """Remove the marker (the session is a session now); absent is fine, and a
    directory squatting on its name is left alone (it never fails a write)."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        os.unlink(UNBORN_NAME, dir_fd=dir_fd)


def is_unborn(dir_fd: int, is_valid: Callable[[str], bool]) -> bool:
    """Whether a session directory is debris of a first write that never completed.

    It is when it holds no document and either the marker of an unfinished first
    write or no lock file (a first write killed between ``mkdir`` and the lock
    file).  A session made by ``lock()`` has its lock file and no marker: it is a
    session, empty or not.  Two ``stat`` calls for a session in use.
    """
    try:
        marked = stat.S_ISREG(os.stat(UNBORN_NAME, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        marked = False
    if not marked:
        try:
            os.stat(LOCK_NAME, dir_fd=dir_fd, follow_symlinks=False)
            return False
        except FileNotFoundError:
            pass
    return not list_documents(dir_fd, is_valid)


def remove_orphans(dir_fd: int, session_dir: str) -> bool:
    """Remove temp files left by writers that were killed mid-write.

    Called with the lock held, when no other writer can own a temp file.  Only
    files are removed, and only through ``dir_fd``: a directory squatting on a
    temp name is left alone (and never blocks a write, since every temp name is
    new).  The names are listed through the path (a listing through a descriptor
    costs three more system calls on every write): what it lists is only ever
    unlinked in ``dir_fd``, and only if it is a temp name.

    :returns: whether the directory holds the marker of an unfinished first write
        (found in the same listing; the caller removes it once its write is done).
    """
    unborn = False
    with os.scandir(session_dir) as entries:
        dot_names = []
        for entry in entries:
            if entry.name[0] == ".":
                dot_names.append(entry.name)
                if entry.name == UNBORN_NAME:
                    unborn = entry.is_file(follow_symlinks=False)
    for name in dot_names:
        if _TEMP.fullmatch(name):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                os.unlink(name, dir_fd=dir_fd)
    return unborn


def write_file(
    dir_fd: int, session_dir: Path, filename: str, data: bytes, *, durable: bool
) -> None:
    """Replace ``filename`` in the session directory with ``data``, atomically (and durably).

    :param session_dir: the directory's path, for messages and probe events.

    A file that exists keeps its mode; a new one is created ``0600``.  On any
    error before the rename the temp file is removed and the old file is intact.

    :raises SessionValueError: if the target is a symlink or not a regular file.
    """
    emit = probes.emit if probes.listeners else None
    try:
        existing = os.stat(filename, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        mode = FILE_MODE
    else:
        if not stat.S_ISREG(existing.st_mode):  # refused before anything is touched
            raise _not_a_file(os.path.join(session_dir, filename), _describe(existing.st_mode))
        mode = stat.S_IMODE(existing.st_mode)
    unborn = remove_orphans(dir_fd, os.fspath(session_dir))
    temp = _temp_name(filename)
    temp_path = session_dir / temp if emit else None
    fd = os.open(temp, _CREATE_FLAGS, FILE_MODE, dir_fd=dir_fd)
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
        os.replace(temp, filename, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    if emit:
        emit(ProbeEvent("replaced", session_dir, filename, temp_path, durable=durable))
    if durable:
        fsync_dir(dir_fd)
        if emit:
            emit(ProbeEvent("dir-synced", session_dir, filename, durable=durable))
    if unborn:
        # The first file is in place (and durable): the session exists now.
        clear_unborn(dir_fd)


def remove_file(dir_fd: int, session_dir: Path, filename: str, *, durable: bool) -> None:
    """Unlink one session file (durably).

    :raises FileNotFoundError: if it does not exist (the caller words the error).
    :raises SessionValueError: if it is not a regular file (a directory, a FIFO...).
    """
    kind = entry_kind(dir_fd, filename)
    if kind is None:
        raise FileNotFoundError(errno.ENOENT, "no such file", filename)
    if kind not in ("a regular file", "a symlink"):
        raise _not_a_file(os.path.join(session_dir, filename), kind)
    os.unlink(filename, dir_fd=dir_fd)
    emit = probes.emit if probes.listeners else None
    if emit:
        emit(ProbeEvent("removed", session_dir, filename, durable=durable))
    if durable:
        fsync_dir(dir_fd)
        if emit:
            emit(ProbeEvent("dir-synced", session_dir, filename, durable=durable))


def remove_documents(dir_fd: int, *, durable: bool) -> None:
    """Empty a session directory of everything but its lock file (lock held)."""
    _empty(dir_fd, keep=LOCK_NAME)
    if durable:
        fsync_dir(dir_fd)


def _empty(dir_fd: int, *, keep: str | None = None) -> None:
    """Remove everything in the directory (but ``keep``), never following a symlink."""
    with os.scandir(dir_fd) as entries:
        found = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_dir in found:
        if name == keep:
            continue
        if is_dir:
            _remove_tree_at(dir_fd, name)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)


def _remove_tree_at(dir_fd: int, name: str) -> None:
    """Remove the directory ``name`` of ``dir_fd`` and all it holds (no symlink followed)."""
    try:
        fd = os.open(name, _SUBDIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)  # swapped for a link or a file: unlink that
        return
    try:
        _empty(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(name, dir_fd=dir_fd)


def remove_session(dir_fd: int, session_dir: Path, *, durable: bool) -> None:
    """Remove a whole session (its lock held through ``dir_fd``'s lock file).

    The directory is first renamed to a hidden tombstone in the root: readers
    and ``list_sessions`` see the whole session or none of it, and waiters on its
    lock notice that it moved and start over.  Then the tombstone is emptied and
    removed, its lock file last.  Tombstones left by killed deletes are swept.
    """
    path = os.fspath(session_dir)
    root, session_id = os.path.split(path)
    tombstone = os.path.join(root, f".{session_id[:229]}.{os.urandom(8).hex()}.deleted")
    os.rename(path, tombstone)
    emit = probes.emit if probes.listeners else None
    if emit:
        emit(ProbeEvent("removed", session_dir, None, durable=durable))
    if durable:
        fsync_dir(root)
        if emit:
            emit(ProbeEvent("dir-synced", session_dir, None, durable=durable))
    _empty(dir_fd, keep=LOCK_NAME)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(LOCK_NAME, dir_fd=dir_fd)
    with contextlib.suppress(OSError):
        os.rmdir(tombstone)
    _sweep_tombstones(root)


def _sweep_tombstones(root: str) -> None:
    """Remove what killed deletes left behind (their sessions were already gone)."""
    with os.scandir(root) as entries:
        stale = [
            entry.name
            for entry in entries
            if entry.name[0] == "." and is_tombstone_name(entry.name)
        ]
    if not stale:
        return
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        for name in stale:
            with contextlib.suppress(OSError):
                _remove_tree_at(root_fd, name)
    finally:
        os.close(root_fd)
