"""Children forked without multiprocessing: the fork, framed records, the reaping.

The crash explorers (:mod:`.crashlog` at the probe points, :mod:`.filecrash`
at the system calls) run a target in a child that dies mid-operation (SIGKILL:
no ``finally``, no ``atexit``), so they fork with :func:`os.fork` and read what
the child sends over a raw descriptor.  :mod:`multiprocessing` is no help
there: a child killed at an arbitrary instruction leaves its machinery (result
pipes, feeder threads, finalizers) half done, and a child under a seccomp
filter must make no system call the explorer did not expect.  The toolkit's
other children (contention workers, lock holders) go through
:mod:`.processes`, which does use :mod:`multiprocessing`.

What the child sends is a stream of *frames*: a pickled record behind its
length, so the parent can tell a whole record from one cut short by the kill.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import struct
import time
from typing import Any

from ..clock import real_monotonic
from .processes import fork_warning_silenced

__all__ = ["FrameReader", "fork", "frame", "kill", "reap", "write_all"]

_LENGTH = struct.Struct("<Q")


def fork() -> int:
    """:func:`os.fork`, with the one warning that forking a threaded process gives
    (Python 3.12+) silenced: the child runs only the target and leaves with
    :func:`os._exit`, under the explorer's timeout."""
    with fork_warning_silenced():
        return os.fork()


def frame(record: tuple[Any, ...]) -> bytes:
    """``record`` as one frame (it must pickle)."""
    payload = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (a pipe may take it in parts)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FrameReader:
    """Reassembles records from the bytes of a frame stream, in whatever pieces they come.

    A frame cut short (the child was killed while another of its threads was
    sending) stays in :attr:`pending` and is never returned.
    """

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        """The records completed by ``data``, in order."""
        buffer = self.pending
        buffer += data
        records: list[tuple[Any, ...]] = []
        offset = 0
        size = _LENGTH.size
        while offset + size <= len(buffer):
            (length,) = _LENGTH.unpack_from(buffer, offset)
            start = offset + size
            if start + length > len(buffer):
                break
            records.append(pickle.loads(bytes(buffer[start : start + length])))
            offset = start + length
        del buffer[:offset]
        return records


def kill(pid: int) -> None:
    """SIGKILL the child, and its process group if it made one (it may have forked)."""
    for send in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(pid, signal.SIGKILL)


def reap(pid: int, deadline: float) -> int | None:
    """The child's wait status; it is SIGKILLed if it lingers past ``deadline``.

    None if it is no child of ours (already reaped), or if, SIGKILLed, it still
    has not ended five seconds later (a process stuck in the kernel).
    """
    killed = False
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if real_monotonic() > deadline:
            if killed:
                return None  # pragma: no cover - a SIGKILLed child that never ends
            kill(pid)
            killed = True
            deadline = real_monotonic() + 5.0
        time.sleep(0.0005)
