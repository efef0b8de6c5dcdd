"""Seccomp user notification from pure Python: stop a child at its file system calls.

:func:`crash.explore_files <pytest_sessionstate.testing.crash.CrashInjector.explore_files>`
must see every file-mutating system call of a target, C extensions included
(sqlite3 writes from C), and decide for each one: let it run, make it fail, or
kill the process before it happens.  Linux's seccomp user notification
(``seccomp(2)``, ``SECCOMP_FILTER_FLAG_NEW_LISTENER``, Linux 5.0+; the
"continue" answer, Linux 5.5+) does exactly that:

1. the forked child sets ``PR_SET_NO_NEW_PRIVS`` (so an unprivileged process may
   install a filter) and installs a BPF filter that sends the selected system
   calls to a *listener* descriptor and lets every other call run at full speed;
2. it hands the listener to the parent (``SCM_RIGHTS`` over a socketpair);
3. for each selected call the child stops inside the kernel until the parent
   answers through the listener: continue (``SECCOMP_USER_NOTIF_FLAG_CONTINUE``),
   fail with an errno, or no answer at all because the parent SIGKILLed it.

Measured on the machine this was built on: about 40 us per intercepted call,
nothing for calls the filter does not select (reads, ``stat``, ``close``...).
ptrace (strace ``--inject``) works too but stops at every entry *and* exit and
counts per system call, not per operation; python-ptrace costs about 450 us a call.

The filter selects the opens only when they may create or truncate
(``O_CREAT``, ``O_TRUNC``, ``O_TMPFILE``): Python's imports and reads open
files all the time and never pay.  Writes are selected whatever the
descriptor; the parent lets a write to a pipe or a terminal through after one
``readlink``.

This module knows the system call numbers of x86_64 and aarch64 (they differ);
on any other machine, another OS, or a sandbox that forbids seccomp or
``/proc/PID/mem``, :func:`unsupported_reason` says why and
:func:`install_filter` raises :class:`SeccompUnavailable`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import platform
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ARCH",
    "NOTIF_SIZE",
    "Notification",
    "SYSCALLS",
    "SeccompUnavailable",
    "install_filter",
    "notification_id_valid",
    "receive",
    "respond_continue",
    "respond_error",
    "unsupported_reason",
]


class SeccompUnavailable(RuntimeError):
    """The system-call interception cannot run here; the message says why."""


# -- system call tables ------------------------------------------------------

#: x86_64 numbers of the calls that may mutate files (and ``seccomp`` itself).
_X86_64: dict[str, int] = {
    "write": 1,
    "open": 2,
    "pwrite64": 18,
    "writev": 20,
    "sendfile": 40,
    "truncate": 76,
    "ftruncate": 77,
    "fsync": 74,
    "fdatasync": 75,
    "rename": 82,
    "mkdir": 83,
    "rmdir": 84,
    "creat": 85,
    "link": 86,
    "unlink": 87,
    "symlink": 88,
    "openat": 257,
    "mkdirat": 258,
    "unlinkat": 263,
    "renameat": 264,
    "linkat": 265,
    "symlinkat": 266,
    "sync_file_range": 277,
    "fallocate": 285,
    "pwritev": 296,
    "renameat2": 316,
    "seccomp": 317,
    "copy_file_range": 326,
    "pwritev2": 328,
    "openat2": 437,
}

#: aarch64 (the generic table: no open/rename/unlink/mkdir..., only their ``at`` forms).
_AARCH64: dict[str, int] = {
    "mkdirat": 34,
    "unlinkat": 35,
    "symlinkat": 36,
    "linkat": 37,
    "renameat": 38,
    "truncate": 45,
    "ftruncate": 46,
    "fallocate": 47,
    "openat": 56,
    "write": 64,
    "writev": 66,
    "pwrite64": 68,
    "pwritev": 70,
    "sendfile": 71,
    "fsync": 82,
    "fdatasync": 83,
    "sync_file_range": 84,
    "renameat2": 276,
    "seccomp": 277,
    "copy_file_range": 285,
    "pwritev2": 287,
    "openat2": 437,
}

#: ``AUDIT_ARCH_*`` values the filter checks, so a call made under another ABI is never misread.
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_TABLES = {"x86_64": _X86_64, "aarch64": _AARCH64}

_MACHINE = platform.machine().lower()
#: The architecture name (``"x86_64"``, ``"aarch64"``), None where it is not supported.
ARCH: str | None = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
}.get(_MACHINE)
#: name -> number of the selected system calls on this machine (empty where unsupported).
SYSCALLS: Mapping[str, int] = dict(_TABLES[ARCH]) if ARCH is not None else {}
#: number -> name.
NAMES: Mapping[int, str] = {number: name for name, number in SYSCALLS.items()}

#: The opens whose flags argument is checked in the filter (index of that argument).
_OPEN_FLAGS_ARG = {"open": 1, "openat": 2}
#: Flags that make an open a possible mutation: ``O_CREAT | O_TRUNC | __O_TMPFILE``.
_MUTATING_OPEN_FLAGS = os.O_CREAT | os.O_TRUNC | 0o20000000

# -- constants of seccomp(2), prctl(2), the BPF machine ------------------------
_PR_SET_NO_NEW_PRIVS = 38
_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_USER_NOTIF = 0x7FC00000
_SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_X32_SYSCALL_BIT = 0x40000000

# ioctl numbers are the generic _IOWR('!', n, size) encoding on both architectures.
_IOC_READ_WRITE = 3
_IOC_WRITE = 1


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("!") << 8) | number


#: ``struct seccomp_notif``: id, pid, flags, then seccomp_data (nr, arch, ip, args[6]).
_NOTIF = struct.Struct("<QIIiIQ6Q")
NOTIF_SIZE = _NOTIF.size  # 80
#: ``struct seccomp_notif_resp``: id, val, error, flags.
_RESP = struct.Struct("<QqiI")
_NOTIF_RECV = _ioc(_IOC_READ_WRITE, 0, NOTIF_SIZE)
_NOTIF_SEND = _ioc(_IOC_READ_WRITE, 1, _RESP.size)
_NOTIF_ID_VALID = _ioc(_IOC_WRITE, 2, 8)


@dataclass(frozen=True)
class Notification:
    """One intercepted system call, the caller stopped in the kernel until it is answered.

    :ivar id: the notification's cookie (answers name it).
    :ivar pid: the thread id of the caller.
    :ivar nr: the system call number.
    :ivar name: its name (:data:`SYSCALLS`).
    :ivar args: its six raw arguments.
    """

    id: int
    pid: int
    nr: int
    name: str
    args: tuple[int, int, int, int, int, int]


# -- libc ---------------------------------------------------------------------


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c") or "libc.so.6"
    return ctypes.CDLL(name, use_errno=True)


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [
        ("len", ctypes.c_ushort),
        ("filter", ctypes.POINTER(_SockFilter)),
    ]


def _program() -> list[tuple[int, int, int, int]]:
    """The BPF filter: notify on the selected calls (opens: only mutating flags), allow the rest."""
    assert ARCH is not None
    table = SYSCALLS
    plain = sorted(
        n for name, n in table.items() if name not in _OPEN_FLAGS_ARG and name != "seccomp"
    )
    opens = sorted((table[name], arg) for name, arg in _OPEN_FLAGS_ARG.items() if name in table)
    # Layout: [0] ld arch, [1] jeq arch (skip 1), [2] ret allow, [3] ld nr, [4] jge x32 -> allow,
    # one jeq per plain call (-> NOTIFY), one jeq per open (-> its flag check), ALLOW,
    # per open: ld flags, jset mask -> NOTIFY else -> ALLOW_END; ALLOW_END, NOTIFY.
    # (BPF jumps only forward.)
    head = 5
    allow = head + len(plain) + len(opens)
    checks = allow + 1
    allow_end = checks + 2 * len(opens)
    notify = allow_end + 1
    code: list[tuple[int, int, int, int]] = [
        (_BPF_LD_W_ABS, 0, 0, 4),
        (_BPF_JEQ_K, 1, 0, _AUDIT_ARCH[ARCH]),
        (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW),
        (_BPF_LD_W_ABS, 0, 0, 0),
        (_BPF_JGE_K, allow - head, 0, _X32_SYSCALL_BIT),
    ]
    for number in plain:
        code.append((_BPF_JEQ_K, notify - len(code) - 1, 0, number))
    for i, (number, _arg) in enumerate(opens):
        code.append((_BPF_JEQ_K, checks + 2 * i - len(code) - 1, 0, number))
    code.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    for _number, arg in opens:
        code.append((_BPF_LD_W_ABS, 0, 0, 16 + 8 * arg))  # low 32 bits (little-endian)
        here = len(code)
        code.append((_BPF_JSET_K, notify - here - 1, allow_end - here - 1, _MUTATING_OPEN_FLAGS))
    code.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    code.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_USER_NOTIF))
    assert len(code) == notify + 1
    for instruction in code:
        jt, jf = instruction[1], instruction[2]
        if not (0 <= jt <= 255 and 0 <= jf <= 255):  # pragma: no cover - a table change broke it
            raise AssertionError(f"BPF jump out of range in {instruction}")
    return code


_support_cache: list[str | None] = []


def unsupported_reason() -> str | None:
    """Why the interception cannot run here, or None if it can.

    Checks the OS, the architecture and the kernel's seccomp support (it reads
    ``/proc/self/status`` and the kernel's list of seccomp actions); the first
    real use in a child still fails clearly if a sandbox forbids what the
    kernel offers.
    """
    if _support_cache:
        return _support_cache[0]
    reason = _probe()
    _support_cache.append(reason)
    return reason


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return (
            f"system-call interception needs Linux (seccomp user notification), not {sys.platform}"
        )
    if ARCH is None:
        return (
            f"system-call interception knows the system call numbers of x86_64 and aarch64, "
            f"not of {platform.machine() or 'this machine'}"
        )
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            status = f.read()
    except OSError as exc:
        return f"/proc is not readable here ({exc}); the interception reads the target through it"
    if "Seccomp:" not in status:
        return "this kernel was built without seccomp (no 'Seccomp:' in /proc/self/status)"
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail", encoding="ascii") as f:
            actions = f.read().split()
    except OSError:
        actions = []
    if actions and "user_notif" not in actions:
        return "this kernel's seccomp has no user notification (needs Linux 5.0+)"
    release = platform.release().split(".")
    try:
        major, minor = int(release[0]), int(release[1].split("-")[0])
    except (IndexError, ValueError):
        major, minor = 0, 0
    if (major, minor) < (5, 5) and major:
        return f"seccomp's 'continue' answer needs Linux 5.5+, this kernel is {platform.release()}"
    return None


def install_filter() -> int:
    """In the calling process (a forked child): install the filter, return the listener fd.

    :raises SeccompUnavailable: if the platform or a sandbox refuses, with the reason.
    """
    reason = unsupported_reason()
    if reason is not None:
        raise SeccompUnavailable(reason)
    libc = _libc()
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise SeccompUnavailable(f"prctl(PR_SET_NO_NEW_PRIVS) failed: {os.strerror(code)}")
    program = _program()
    array = (_SockFilter * len(program))(*(_SockFilter(*insn) for insn in program))
    prog = _SockFprog(len(program), array)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(
        ctypes.c_long(SYSCALLS["seccomp"]),
        ctypes.c_ulong(_SECCOMP_SET_MODE_FILTER),
        ctypes.c_ulong(_SECCOMP_FILTER_FLAG_NEW_LISTENER),
        ctypes.byref(prog),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise SeccompUnavailable(
            f"seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER) failed: {os.strerror(err)} "
            "(a sandbox or container profile may forbid seccomp filters or user notification)"
        )
    return int(fd)


def receive(listener: int) -> Notification | None:
    """Read one pending notification (call when ``listener`` is readable).

    :returns: None if the caller went away before it could be read (it was killed).
    """
    buffer = bytearray(NOTIF_SIZE)  # the kernel insists on a zeroed buffer
    try:
        fcntl.ioctl(listener, _NOTIF_RECV, buffer, True)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EINTR):
            return None
        raise
    cookie, pid, _flags, nr, _arch, _ip, *args = _NOTIF.unpack(buffer)
    return Notification(cookie, pid, nr, NAMES.get(nr, f"syscall {nr}"), tuple(args))


def _send(listener: int, cookie: int, error: int, flags: int) -> bool:
    try:
        fcntl.ioctl(listener, _NOTIF_SEND, _RESP.pack(cookie, 0, error, flags))
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # the caller died or was interrupted: stale
            return False
        raise
    return True


def respond_continue(listener: int, cookie: int) -> bool:
    """Let the call run as if never stopped.  False if the notification was stale."""
    return _send(listener, cookie, 0, _SECCOMP_USER_NOTIF_FLAG_CONTINUE)


def respond_error(listener: int, cookie: int, code: int) -> bool:
    """Make the call fail with ``code`` (an errno) without running it.  False if stale."""
    return _send(listener, cookie, -code, 0)


def notification_id_valid(listener: int, cookie: int) -> bool:
    """Whether the caller is still waiting on ``cookie`` (its memory may be trusted)."""
    try:
        fcntl.ioctl(listener, _NOTIF_ID_VALID, struct.pack("<Q", cookie))
    except OSError:
        return False
    return True
