"""Who holds a file lock right now, read from Linux's ``/proc/locks``.

The root checker shows the holders of the session locks without taking any lock
itself (even a failed non-blocking attempt could make a writer's ``timeout=0``
attempt fail at that moment) and without opening the lock files for writing.
``/proc/locks`` lists every lock on the system with the device and inode of the
locked file and the pid of its holder; a line whose kind is preceded by ``->``
is a process waiting for that lock.  The kernel prints the device's major and
minor numbers in hex and the inode in decimal, for example::

    1: FLOCK  ADVISORY  WRITE 5048 fe:00:2146389 0 EOF
    1: -> FLOCK  ADVISORY  WRITE 5051 fe:00:2146389 0 EOF

A holder in another PID namespace (or already gone) is shown with pid ``0``,
an open-file-description lock with pid ``-1``: both become ``None`` here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["PROC_LOCKS", "LockEntry", "command_of", "file_key", "read_locks"]

#: Where Linux lists the file locks of the system.
PROC_LOCKS = "/proc/locks"

_FILE_ID = re.compile(r"(?P<major>[0-9a-fA-F]+):(?P<minor>[0-9a-fA-F]+):(?P<inode>[0-9]+)")


@dataclass(frozen=True)
class LockEntry:
    """One line of ``/proc/locks``.

    :param kind: ``FLOCK``, ``POSIX``, ``OFDLCK``, ``LEASE``...
    :param access: ``WRITE`` (exclusive) or ``READ`` (shared).
    :param pid: the holder's (or waiter's) pid; None when the kernel does not
        show it to this PID namespace.
    :param device: ``(major, minor)`` of the file's filesystem.
    :param inode: the file's inode number.
    :param waiting: True for a process queued for the lock, False for a holder.
    """

    kind: str
    access: str
    pid: int | None
    device: tuple[int, int]
    inode: int
    waiting: bool


def _parse_line(line: str) -> LockEntry | None:
    fields = line.split()
    if len(fields) < 3:
        return None
    waiting = fields[1] == "->"
    body = fields[2:] if waiting else fields[1:]
    for index, field in enumerate(body):
        match = _FILE_ID.fullmatch(field)
        if match is None or index < 2:
            continue
        try:
            pid: int | None = int(body[index - 1])
        except ValueError:
            return None
        if pid is not None and pid <= 0:  # not visible here (0), or an OFD lock (-1)
            pid = None
        access = body[index - 2] if index >= 3 else ""
        return LockEntry(
            kind=body[0],
            access=access,
            pid=pid,
            device=(int(match["major"], 16), int(match["minor"], 16)),
            inode=int(match["inode"]),
            waiting=waiting,
        )
    return None


def read_locks(path: str = PROC_LOCKS) -> dict[tuple[int, int, int], list[LockEntry]] | None:
    """The locks of the system, by ``(major, minor, inode)`` of the locked file.

    :param path: the file to read (``/proc/locks``).
    :returns: None where the list cannot be read (not Linux, ``/proc`` not mounted).
    """
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    locks: dict[tuple[int, int, int], list[LockEntry]] = {}
    for line in text.splitlines():
        entry = _parse_line(line)
        if entry is not None:
            locks.setdefault((*entry.device, entry.inode), []).append(entry)
    return locks


def file_key(info: os.stat_result) -> tuple[int, int, int]:
    """The key of :func:`read_locks` for a file, from its ``stat``."""
    return (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)


def command_of(pid: int | None) -> str | None:
    """The command name of a process (``/proc/PID/comm``), or None if it cannot be read."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="backslashreplace") as file:
            name = file.read().strip()
    except OSError:
        return None
    return name or None
