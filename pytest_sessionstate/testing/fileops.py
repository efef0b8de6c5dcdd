"""Decode an intercepted system call into the file operation it is, paths relative to a directory.

The parent of an explored child receives raw system calls (a number and six
integers, see :mod:`pytest_sessionstate.testing.seccomp`).  This module turns
each one into a :class:`FileOp`: its operation (``"open"``, ``"write"``,
``"rename"``...: one name for all the variants of a call, so ``openat`` and
``open``, ``renameat2`` and ``rename`` are the same operation on every
architecture), the path(s) it concerns relative to the explored directory, and
a short detail (bytes and offset of a write, the flags of an open) -- or None
when the call is not a file mutation inside the directory, and must simply run.

Paths are read from the stopped caller's memory (``/proc/PID/mem``) and
resolved the way the kernel will: relative to the descriptor ``dirfd``
(``/proc/PID/fd/N``) or to the caller's working directory (``AT_FDCWD``,
``/proc/PID/cwd``), parents through their symlinks, the last component as it
is.  Descriptor calls (``write``, ``fsync``...) are placed by the path of their
descriptor.

A time-of-check-to-time-of-use race is inherent in this: another thread of the
target may change a path argument or a symlink between our read and the
kernel's.  For a test tool that watches its own target this is accepted (and
documented); the notification is re-validated after the read
(``SECCOMP_IOCTL_NOTIF_ID_VALID``) so a dead caller's recycled memory is never trusted.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field

from .seccomp import Notification

__all__ = ["FileOp", "Decoder", "OPERATIONS"]

#: The operations that count as crash points, by the names :attr:`FileOp.operation` uses.
OPERATIONS: tuple[str, ...] = (
    "open",
    "write",
    "pwrite",
    "writev",
    "pwritev",
    "sendfile",
    "copy_file_range",
    "truncate",
    "ftruncate",
    "fallocate",
    "fsync",
    "fdatasync",
    "sync_file_range",
    "rename",
    "unlink",
    "mkdir",
    "rmdir",
    "link",
    "symlink",
)

_AT_FDCWD = -100
_AT_REMOVEDIR = 0x200
_O_ACCMODE = 0o3
_O_TMPFILE_BIT = 0o20000000
_PATH_MAX = 4096
_CREAT_FLAGS = os.O_CREAT | os.O_WRONLY | os.O_TRUNC
_DELETED = " (deleted)"

#: system call name -> (operation, kind of first argument).
_FD_CALLS = {
    "write": "write",
    "pwrite64": "pwrite",
    "writev": "writev",
    "pwritev": "pwritev",
    "pwritev2": "pwritev",
    "ftruncate": "ftruncate",
    "fallocate": "fallocate",
    "fsync": "fsync",
    "fdatasync": "fdatasync",
    "sync_file_range": "sync_file_range",
}


@dataclass(frozen=True)
class FileOp:
    """One file-mutating operation inside the explored directory.

    :ivar k: its rank among the run's operations (1-based; the crash point number).
    :ivar operation: the operation (:data:`OPERATIONS`).
    :ivar path: the path it concerns, relative to the directory (``"."``: the directory).
    :ivar syscall: the system call that made it (``"openat"``, ``"pwrite64"``...).
    :ivar detail: what it does, briefly (``"52 bytes at offset 0"``, ``"create, truncate"``).
    :ivar target: the second path of ``rename``/``link`` (relative), the target of a
        ``symlink``; None otherwise.
    """

    k: int
    operation: str
    path: str
    syscall: str
    detail: str = ""
    target: str | None = None
    # What the persistence model needs (not compared, not shown).
    fd: int = field(default=-1, compare=False, repr=False)
    flags: int = field(default=0, compare=False, repr=False)
    key: tuple[int, int] | None = field(default=None, compare=False, repr=False)
    is_dir: bool = field(default=False, compare=False, repr=False)
    absolute: str = field(default="", compare=False, repr=False)
    absolute_target: str = field(default="", compare=False, repr=False)
    pid: int = field(default=0, compare=False, repr=False)

    def __str__(self) -> str:
        text = f"{self.operation} {self.path!r}"
        if self.target is not None:
            text += f" -> {self.target!r}"
        if self.detail:
            text += f" ({self.detail})"
        return text


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value & (1 << 63) else value


def _open_flags(flags: int) -> str:
    words = []
    if flags & _O_TMPFILE_BIT:
        words.append("tmpfile")
    elif flags & os.O_CREAT:
        words.append("create" + (", exclusive" if flags & os.O_EXCL else ""))
    if flags & os.O_TRUNC:
        words.append("truncate")
    if flags & os.O_APPEND:
        words.append("append")
    return ", ".join(words)


class Decoder:
    """Turns the notifications of one run into :class:`FileOp` objects.

    :param root: the explored directory, as an absolute path with symlinks resolved.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._prefix = root.rstrip("/") + "/"
        self._mem: dict[int, int] = {}
        self.count = 0

    def close(self) -> None:
        """Close the memory descriptors opened for the run's processes."""
        for fd in self._mem.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._mem.clear()

    # -- reading the caller ---------------------------------------------------

    def _memory(self, pid: int) -> int:
        fd = self._mem.get(pid)
        if fd is None:
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            self._mem[pid] = fd
        return fd

    def read_memory(self, pid: int, address: int, size: int) -> bytes:
        """``size`` bytes of the caller's memory at ``address`` (fewer at an unmapped page)."""
        fd = self._memory(pid)
        try:
            return os.pread(fd, size, address)
        except OSError:
            # The range crosses into an unmapped page: read up to the page's end.
            end = (address | 0xFFF) + 1
            if end - address >= size:
                raise
            return os.pread(fd, end - address, address)

    def read_string(self, pid: int, address: int) -> str:
        """The NUL-terminated path at ``address``."""
        if address == 0:
            raise OSError("NULL path")
        chunks = []
        total = 0
        while total < _PATH_MAX:
            piece = self.read_memory(pid, address + total, min(256, _PATH_MAX - total))
            if not piece:
                break
            cut = piece.find(b"\0")
            if cut >= 0:
                chunks.append(piece[:cut])
                break
            chunks.append(piece)
            total += len(piece)
        return os.fsdecode(b"".join(chunks))

    def fd_path(self, pid: int, fd: int) -> str | None:
        """The path of the caller's descriptor ``fd`` (None for pipes, sockets, bad fds)."""
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return None
        if not link.startswith("/"):
            return None
        if link.endswith(_DELETED):
            link = link[: -len(_DELETED)]
        return link

    def _base(self, pid: int, dirfd: int) -> str | None:
        if dirfd == _AT_FDCWD:
            try:
                return os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                return None
        return self.fd_path(pid, dirfd)

    def resolve(self, pid: int, dirfd: int, address: int) -> str | None:
        """The absolute path the kernel will act on (parents' symlinks resolved)."""
        raw = self.read_string(pid, address)
        if not raw:
            return None
        if not raw.startswith("/"):
            base = self._base(pid, dirfd)
            if base is None:
                return None
            raw = os.path.join(base, raw)
        trimmed = raw.rstrip("/") or "/"
        parent, name = os.path.split(trimmed)
        if name in ("", ".", ".."):
            return os.path.realpath(trimmed)
        return os.path.join(os.path.realpath(parent), name)

    def relative(self, absolute: str | None) -> str | None:
        """``absolute`` relative to the root (``"."`` for the root), None when outside it."""
        if absolute is None:
            return None
        if absolute == self.root:
            return "."
        if absolute.startswith(self._prefix):
            return absolute[len(self._prefix) :]
        return None

    def _fd_info(self, pid: int, fd: int) -> tuple[int, int]:
        """(position, flags) of the caller's descriptor (one raw read: a text file
        object would cost more than the rest of the decoding)."""
        pos = flags = 0
        try:
            info_fd = os.open(f"/proc/{pid}/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = os.read(info_fd, 4096)
            finally:
                os.close(info_fd)
            for line in data.split(b"\n"):
                if line.startswith(b"pos:"):
                    pos = int(line.split()[1])
                elif line.startswith(b"flags:"):
                    flags = int(line.split()[1], 8)
        except (OSError, ValueError, IndexError):
            pass
        return pos, flags

    # -- decoding -------------------------------------------------------------

    def decode(self, note: Notification) -> FileOp | None:
        """The operation ``note`` makes inside the root, or None (run it untouched).

        Never raises for what it reads: an unreadable argument makes the call
        count as outside the root (it runs untouched).
        """
        try:
            return self._decode(note)
        except (OSError, ValueError):
            return None

    def _fd_op(self, note: Notification, fd: int, operation: str) -> FileOp | None:
        pid = note.pid
        path = self.fd_path(pid, fd)
        relative = self.relative(path)
        if relative is None or path is None:
            return None
        try:
            info = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            return None
        key = (info.st_dev, info.st_ino)
        is_dir = stat.S_ISDIR(info.st_mode)
        args = note.args
        detail = ""
        if operation in ("write", "writev"):
            count = args[2] if operation == "write" else self._iov_total(pid, args[1], args[2])
            pos, flags = self._fd_info(pid, fd)
            at = f"appended at {info.st_size}" if flags & os.O_APPEND else f"at offset {pos}"
            detail = f"{count} bytes {at}"
        elif operation == "pwrite":
            detail = f"{args[2]} bytes at offset {_signed64(args[3])}"
        elif operation == "pwritev":
            offset = _signed64(args[3])
            where = "at the current offset" if offset == -1 else f"at offset {offset}"
            detail = f"{self._iov_total(pid, args[1], args[2])} bytes {where}"
        elif operation == "ftruncate":
            detail = f"to {_signed64(args[1])} bytes"
        elif operation == "fallocate":
            detail = f"{_signed64(args[3])} bytes at offset {_signed64(args[2])}"
        elif operation == "sendfile":
            detail = f"{args[3]} bytes"
        elif operation == "copy_file_range":
            detail = f"{args[4]} bytes"
        self.count += 1
        return FileOp(
            self.count,
            operation,
            relative,
            note.name,
            detail,
            fd=fd,
            key=key,
            is_dir=is_dir,
            absolute=path,
            pid=pid,
        )

    def _iov_total(self, pid: int, address: int, count: int) -> int:
        count = min(count, 1024)
        data = self.read_memory(pid, address, 16 * count)
        return sum(
            int.from_bytes(data[16 * i + 8 : 16 * i + 16], "little") for i in range(len(data) // 16)
        )

    def _path_op(
        self,
        note: Notification,
        operation: str,
        dirfd: int,
        address: int,
        *,
        detail: str = "",
        flags: int = 0,
    ) -> FileOp | None:
        absolute = self.resolve(note.pid, dirfd, address)
        relative = self.relative(absolute)
        if relative is None or absolute is None:
            return None
        self.count += 1
        return FileOp(
            self.count,
            operation,
            relative,
            note.name,
            detail,
            flags=flags,
            absolute=absolute,
            pid=note.pid,
        )

    def _open(self, note: Notification, dirfd: int, address: int, flags: int) -> FileOp | None:
        if not flags & (os.O_CREAT | os.O_TRUNC | _O_TMPFILE_BIT):
            return None
        absolute = self.resolve(note.pid, dirfd, address)
        relative = self.relative(absolute)
        if relative is None or absolute is None:
            return None
        if not flags & (os.O_TRUNC | _O_TMPFILE_BIT):
            # O_CREAT alone mutates only when the file is not there yet.
            try:
                os.lstat(absolute)
            except FileNotFoundError:
                pass
            except OSError:
                return None
            else:
                return None  # opens it (or fails with EEXIST): nothing changes
        elif flags & os.O_TRUNC and flags & _O_ACCMODE == os.O_RDONLY:
            return None  # O_TRUNC with O_RDONLY: unspecified; Linux truncates only when writable
        self.count += 1
        return FileOp(
            self.count,
            "open",
            relative,
            note.name,
            _open_flags(flags),
            flags=flags,
            absolute=absolute,
            pid=note.pid,
        )

    def _two_paths(
        self,
        note: Notification,
        operation: str,
        old: tuple[int, int],
        new: tuple[int, int],
        detail: str = "",
    ) -> FileOp | None:
        first = self.resolve(note.pid, *old)
        second = self.resolve(note.pid, *new)
        rel_first, rel_second = self.relative(first), self.relative(second)
        if rel_first is None and rel_second is None:
            return None
        self.count += 1
        outside = "(outside)"
        return FileOp(
            self.count,
            operation,
            rel_first if rel_first is not None else outside,
            note.name,
            detail,
            target=rel_second if rel_second is not None else outside,
            absolute=first or "",
            absolute_target=second or "",
            pid=note.pid,
        )

    def _decode(self, note: Notification) -> FileOp | None:
        name, a = note.name, note.args
        cwd = _AT_FDCWD
        operation = _FD_CALLS.get(name)
        if operation is not None:
            return self._fd_op(note, _signed32(a[0]), operation)
        if name == "sendfile":
            return self._fd_op(note, _signed32(a[0]), "sendfile")
        if name == "copy_file_range":
            return self._fd_op(note, _signed32(a[2]), "copy_file_range")
        if name == "openat":
            return self._open(note, _signed32(a[0]), a[1], a[2] & 0xFFFFFFFF)
        if name == "open":
            return self._open(note, cwd, a[0], a[1] & 0xFFFFFFFF)
        if name == "creat":
            return self._open(note, cwd, a[0], _CREAT_FLAGS)
        if name == "openat2":
            how = self.read_memory(note.pid, a[2], 8)
            return self._open(note, _signed32(a[0]), a[1], int.from_bytes(how, "little"))
        if name == "truncate":
            return self._path_op(note, "truncate", cwd, a[0], detail=f"to {_signed64(a[1])} bytes")
        if name in ("rename", "renameat", "renameat2"):
            if name == "rename":
                old, new, flags = (cwd, a[0]), (cwd, a[1]), 0
            else:
                old, new = (_signed32(a[0]), a[1]), (_signed32(a[2]), a[3])
                flags = a[4] & 0xFFFFFFFF if name == "renameat2" else 0
            detail = {1: "noreplace", 2: "exchange", 4: "whiteout"}.get(flags, "")
            return self._two_paths(note, "rename", old, new, detail)
        if name in ("link", "linkat"):
            if name == "link":
                return self._two_paths(note, "link", (cwd, a[0]), (cwd, a[1]))
            return self._two_paths(note, "link", (_signed32(a[0]), a[1]), (_signed32(a[2]), a[3]))
        if name in ("symlink", "symlinkat"):
            target = self.read_string(note.pid, a[0])
            if name == "symlink":
                op = self._path_op(note, "symlink", cwd, a[1])
            else:
                op = self._path_op(note, "symlink", _signed32(a[1]), a[2])
            if op is None:
                return None
            return FileOp(
                op.k,
                op.operation,
                op.path,
                op.syscall,
                "",
                target,
                absolute=op.absolute,
                pid=op.pid,
            )
        if name == "unlink":
            return self._path_op(note, "unlink", cwd, a[0])
        if name == "unlinkat":
            remove_dir = bool(a[2] & _AT_REMOVEDIR)
            return self._path_op(note, "rmdir" if remove_dir else "unlink", _signed32(a[0]), a[1])
        if name == "rmdir":
            return self._path_op(note, "rmdir", cwd, a[0])
        if name == "mkdir":
            return self._path_op(note, "mkdir", cwd, a[0])
        if name == "mkdirat":
            return self._path_op(note, "mkdir", _signed32(a[0]), a[1])
        return None
