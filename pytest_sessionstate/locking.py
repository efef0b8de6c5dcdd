"""The session lock: exclusive across processes and threads, re-entrant per thread.

How the pieces fit, and why:

* Between processes, an OS lock on ``<session>/.lock``: ``flock`` on POSIX, one
  byte of ``LockFileEx`` on Windows.  The kernel drops it the moment its holder
  dies, so a SIGKILLed holder never blocks the next acquirer, and the file is
  never unlinked on release (unlinking lets two processes lock two different
  inodes: filelock #27, #574).
* The single non-blocking attempt and the release go through filelock's
  ``lock_descriptor`` / ``unlock_descriptor``, which give us the native primitive
  of each platform (and its errno handling) over a descriptor we own.
* We complement filelock where its ``FileLock`` does not serve: its timeouts
  are a poll loop (a 50 ms default poll costs throughput and tail latency under
  contention) measured with ``time.perf_counter``, which freezegun freezes, so a
  frozen test could hang.  On POSIX a contended wait is a blocking ``flock`` in a
  helper thread (the kernel queues waiters and wakes one on release), while the
  caller waits for it with its deadline on a real monotonic clock; on timeout the
  helper is abandoned and lets go of the lock as soon as it gets it.  Elsewhere
  the non-blocking attempt is polled against the same real deadline.
* Between threads of one process, a ``threading.Lock`` per session in front of
  the OS lock, and re-entrancy by owner thread and count, shared by every
  :class:`~pytest_sessionstate.StateManager` of the session in this process.
* Each :class:`SessionLock` keeps its lock file open (unlocked) between
  acquisitions, which saves an ``open`` and a ``close`` per acquisition: one
  descriptor per session in use in the process, closed when its last
  :class:`~pytest_sessionstate.StateManager` is gone, and in forked children.
* A lock file may be deleted along with its session (``delete()``) while others
  wait on it; after acquiring, the holder checks that its descriptor still is
  the file at the path, and starts over if not.
"""

from __future__ import annotations

import _thread
import contextlib
import errno
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import fsops, probes
from .clock import real_monotonic
from .errors import SessionLockError, SessionValueError
from .probes import ProbeEvent

if sys.platform != "win32":  # pragma: no branch
    import fcntl
else:  # pragma: no cover
    fcntl = None

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["LockContext", "SessionLock", "lock_for"]

_OPEN_FLAGS = (
    os.O_RDWR
    | os.O_CREAT
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)

_lock_descriptor: Callable[..., bool] | None = None
_unlock_descriptor: Callable[[int], None] | None = None


def _filelock() -> tuple[Callable[..., bool], Callable[[int], None]]:
    """filelock's descriptor lock, imported on first use (it costs ~10 ms to import)."""
    global _lock_descriptor, _unlock_descriptor
    if _lock_descriptor is None or _unlock_descriptor is None:
        from filelock import lock_descriptor, unlock_descriptor

        _lock_descriptor, _unlock_descriptor = lock_descriptor, unlock_descriptor
    return _lock_descriptor, _unlock_descriptor


class _Timeout(Exception):
    """Internal: the deadline passed."""


def _open_lock_file(path: str, session_dir: str, on_created_dir: Callable[[], None] | None) -> int:
    """Open the lock file, creating the session directory unless ``on_created_dir`` is None.

    :raises FileNotFoundError: if the session directory is missing and may not be created.
    """
    try:
        return _open_no_symlink(path)
    except FileNotFoundError:
        if on_created_dir is None:
            raise
        # The session directory does not exist yet (or was just deleted).
        os.makedirs(os.path.dirname(session_dir), mode=0o700, exist_ok=True)
        try:
            os.mkdir(session_dir, 0o700)
        except FileExistsError:
            pass
        else:
            on_created_dir()
        return _open_no_symlink(path)


def _open_no_symlink(path: str) -> int:
    """Open (or create) the lock file; a symlink in its place is refused, never followed.

    :raises SessionValueError: if the lock file is a symlink (it could lead out of the root).
    """
    try:
        return os.open(path, _OPEN_FLAGS, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    raise SessionValueError(
        f"lock file {path!r} is a symlink; refusing to follow it out of the root",
        details={"path": path, "problem": "a symlink"},
    )


def _is_current(fd: int, path: str) -> bool:
    """Whether ``fd`` is still the file at ``path`` (not deleted or replaced)."""
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_ino, held.st_dev) == (on_disk.st_ino, on_disk.st_dev)


class _Flag:
    """A one-shot event on a bare lock: the cheapest wake-up the runtime offers.

    ``threading.Event`` waits through a ``Condition`` (a lock allocated per wait
    and a Python-level notify); under contention every grant pays for it, so the
    hand-over from the helper thread to the caller uses one raw lock instead.
    :meth:`set` is called once, by the helper thread.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        self._set = True
        self._lock.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set (real-time ``timeout`` in seconds, None for ever); True if set."""
        if self._set:
            return True
        got = self._lock.acquire() if timeout is None else self._lock.acquire(True, timeout)
        if got:
            self._lock.release()  # stay set for any later wait
        return got or self._set


class _Waiter:
    """A blocking ``flock`` in a helper thread: the kernel queues it with the other waiters.

    The caller waits for it with a real deadline.  On timeout the waiter is
    *abandoned* but stays queued: the next acquisition in this process adopts
    it instead of queueing again; if the lock is granted while nobody wants it,
    the helper closes the descriptor, which releases it at once.

    The helper comes from a small pool of idle threads (:func:`_submit`): under
    contention every acquisition waits, and starting a thread for each (clone,
    thread state, ``threading.Thread.start``'s handshake, teardown on the way
    out while the caller wants the GIL) halved the throughput on two cores.
    """

    __slots__ = ("_abandoned", "_closed", "_mutex", "done", "error", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.done = _Flag()
        self.error: BaseException | None = None
        self._mutex = _thread.allocate_lock()
        self._abandoned = False
        self._closed = False
        _submit(self)

    def _run(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException as exc:  # pragma: no cover - EBADF, ENOLCK...
            self.error = exc
        with self._mutex:
            if self._abandoned:
                self._closed = True
                os.close(self.fd)  # nobody wants it any more: closing releases it
            else:
                self.done.set()

    def abandon(self) -> bool:
        """Give up waiting; False if the lock was granted meanwhile (then it is the caller's)."""
        with self._mutex:
            if self.done.is_set():
                return False
            self._abandoned = True
            return True

    def adopt(self) -> bool:
        """Take an abandoned waiter back; False if it already let go of its descriptor."""
        with self._mutex:
            if self._closed:
                return False
            self._abandoned = False
            return True

    def close_in_child(self) -> None:
        """After fork: the helper thread is gone, only the inherited descriptor is left."""
        if self._closed:
            # The helper closed it already: the number may now be another file of the
            # child's (a pipe, a socket...), which must not be closed under its owner.
            return
        with contextlib.suppress(OSError):
            os.close(self.fd)


#: How long a zero-timeout attempt lets this process's own queued waiter report a grant.
_ADOPT_GRACE = 0.01

#: Seconds an idle pooled helper thread lingers before it ends.
_HELPER_IDLE = 5.0


class _Helper:
    """A pooled helper thread: runs one :class:`_Waiter` at a time, idles in between."""

    __slots__ = ("_wake", "waiter")

    def __init__(self, waiter: _Waiter) -> None:
        self.waiter: _Waiter | None = waiter
        self._wake = _thread.allocate_lock()
        self._wake.acquire()
        _thread.start_new_thread(self._loop, ())

    def assign(self, waiter: _Waiter) -> None:
        """Give an idle helper (just taken off :data:`_idle_helpers`) its next waiter."""
        self.waiter = waiter
        self._wake.release()

    def _loop(self) -> None:
        while True:
            waiter, self.waiter = self.waiter, None
            if waiter is not None:
                waiter._run()
                del waiter
            with _pool_lock:
                _idle_helpers.append(self)
            if self._wake.acquire(True, _HELPER_IDLE):
                continue
            with _pool_lock:
                if self in _idle_helpers:  # still idle: nobody can hand it work any more
                    _idle_helpers.remove(self)
                    return
            self._wake.acquire()  # taken off the list just now: its waiter is on the way


_idle_helpers: list[_Helper] = []
_pool_lock = _thread.allocate_lock()


def _submit(waiter: _Waiter) -> None:
    """Run ``waiter`` on an idle helper thread, or on a new one."""
    with _pool_lock:
        helper = _idle_helpers.pop() if _idle_helpers else None
    if helper is None:
        _Helper(waiter)
    else:
        helper.assign(waiter)


class SessionLock:
    """The process-wide state of one session's lock (one instance per lock file).

    Obtain it with :func:`lock_for`; use it through
    :meth:`StateManager.lock() <pytest_sessionstate.StateManager.lock>`.
    """

    __slots__ = (
        "__weakref__",
        "_count",
        "_fd",
        "_idle_fd",
        "_owner",
        "_pending",
        "_threads",
        "path",
        "session_dir",
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self.session_dir = os.path.dirname(path)
        self._threads = threading.Lock()
        self._owner: int | None = None
        self._count = 0
        self._fd = -1
        # The lock file, open but unlocked, kept from the last release: saves an
        # open() and a close() per acquisition (checked against the path as any fd).
        self._idle_fd = -1
        # A waiter abandoned by a timed-out acquisition, still queued in the kernel.
        self._pending: _Waiter | None = None

    def held_by_me(self) -> bool:
        """Whether the calling thread holds this lock."""
        return self._owner == threading.get_ident()

    def acquire(
        self,
        timeout: float,
        *,
        session_id: str,
        session_dir: Path,
        on_created_dir: Callable[[], None] | None,
    ) -> float | None:
        """Acquire; return the seconds waited, or None for a re-entrant acquisition.

        :raises SessionLockError: if the lock is not free within ``timeout`` seconds.
        """
        me = threading.get_ident()
        if self._owner == me:
            self._count += 1
            return None
        start = real_monotonic()
        deadline = start + timeout

        def on_wait() -> None:
            if probes.listeners:
                probes.emit(ProbeEvent("lock-waiting", session_dir))

        try:
            if not self._threads.acquire(False):
                if timeout == 0:
                    raise _Timeout
                on_wait()
                wait = -1.0 if timeout < 0 else min(timeout, threading.TIMEOUT_MAX)
                if not self._threads.acquire(True, wait):
                    raise _Timeout
            try:
                self._fd = self._os_acquire(timeout, deadline, on_wait, on_created_dir)
            except BaseException:
                self._threads.release()
                raise
        except _Timeout:
            raise SessionLockError(
                f"could not acquire the lock of session {session_id!r} within {timeout}s",
                details={"session_id": session_id, "timeout": timeout, "lock_file": self.path},
            ) from None
        self._owner = me
        self._count = 1
        return real_monotonic() - start

    def _os_acquire(
        self,
        timeout: float,
        deadline: float,
        on_wait: Callable[[], None],
        on_created_dir: Callable[[], None] | None,
    ) -> int:
        """Take the OS lock (the thread lock is held); return the locked descriptor."""
        lock_descriptor, _ = _filelock()
        waited = False
        while True:
            pending, self._pending = self._pending, None
            if pending is not None and pending.adopt():
                if not waited and not pending.done.is_set():
                    waited = True
                    on_wait()
                fd = self._wait_for(pending, timeout, deadline, grace=_ADOPT_GRACE)
            else:
                fd, self._idle_fd = self._idle_fd, -1
                if fd < 0:
                    fd = _open_lock_file(self.path, self.session_dir, on_created_dir)
                try:
                    if not lock_descriptor(fd, blocking=False):
                        if timeout == 0:
                            raise _Timeout
                        if not waited:
                            waited = True
                            on_wait()
                        if fcntl is None:  # pragma: no cover - Windows
                            _poll(lock_descriptor, fd, timeout, deadline)
                        elif timeout < 0:
                            fcntl.flock(fd, fcntl.LOCK_EX)
                        else:
                            waiter, fd = _Waiter(fd), -1  # the waiter owns it now
                            fd = self._wait_for(waiter, timeout, deadline, grace=0.0)
                except BaseException:
                    if fd >= 0:
                        os.close(fd)
                    raise
            if _is_current(fd, self.path):
                return fd
            os.close(fd)  # the session was deleted under us: lock the new file
            if timeout > 0 and real_monotonic() > deadline:
                raise _Timeout

    def _wait_for(self, waiter: _Waiter, timeout: float, deadline: float, *, grace: float) -> int:
        """Wait for ``waiter`` until the deadline; keep it pending on timeout."""
        if timeout < 0:
            seconds: float | None = None
        else:
            seconds = min(max(deadline - real_monotonic(), grace), threading.TIMEOUT_MAX)
        if not waiter.done.wait(seconds) and waiter.abandon():
            self._pending = waiter
            raise _Timeout
        if waiter.error is not None:  # pragma: no cover
            os.close(waiter.fd)
            raise waiter.error
        return waiter.fd

    def release(self) -> bool:
        """Release one level; True if the lock is now free.

        :raises RuntimeError: if the calling thread does not hold the lock.
        """
        if self._owner != threading.get_ident():
            raise RuntimeError(f"the lock {self.path!r} is not held by this thread")
        self._count -= 1
        if self._count:
            return False
        fd, self._fd, self._owner = self._fd, -1, None
        try:
            _, unlock_descriptor = _filelock()
            try:
                unlock_descriptor(fd)
            except BaseException:
                os.close(fd)  # closing releases the lock in any case
                raise
            if self._idle_fd < 0:
                self._idle_fd = fd
            else:  # pragma: no cover - only one descriptor is ever idle
                os.close(fd)
        finally:
            self._threads.release()
        return True

    def __del__(self) -> None:
        fd, self._idle_fd = self._idle_fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _forget_after_fork(self) -> None:
        # A forked child inherits the parent's descriptors, and with them the flock:
        # close ours (without unlocking: that would free the parent's lock too).
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        if self._idle_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._idle_fd)
        if self._pending is not None:
            self._pending.close_in_child()
        self._idle_fd = -1
        self._fd = -1
        self._pending = None
        self._owner = None
        self._count = 0
        self._threads = threading.Lock()


def _poll(
    lock_descriptor: Callable[..., bool], fd: int, timeout: float, deadline: float
) -> None:  # pragma: no cover - platforms without flock
    """Retry the non-blocking attempt against the real deadline (no kernel queue here)."""
    delay = 0.001
    while not lock_descriptor(fd, blocking=False):
        if timeout > 0 and real_monotonic() + delay > deadline:
            raise _Timeout
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


_registry: weakref.WeakValueDictionary[str, SessionLock] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def lock_for(lock_file: str) -> SessionLock:
    """The process's :class:`SessionLock` of ``lock_file`` (a resolved path)."""
    lock = _registry.get(lock_file)
    if lock is None:
        with _registry_lock:
            lock = _registry.get(lock_file)
            if lock is None:
                lock = SessionLock(lock_file)
                _registry[lock_file] = lock
    return lock


def _after_fork_in_child() -> None:
    global _registry_lock, _pool_lock
    _registry_lock = threading.Lock()
    _pool_lock = _thread.allocate_lock()
    _idle_helpers.clear()  # their threads did not survive the fork
    for lock in list(_registry.values()):
        lock._forget_after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_after_fork_in_child)


class LockContext:
    """What :meth:`StateManager.lock` returns: a context manager over the session lock."""

    __slots__ = ("_discard_new", "_lock", "_manager", "_missing", "_timeout", "created_dir")

    def __init__(
        self,
        manager: Any,
        lock: SessionLock,
        timeout: float,
        *,
        missing: Callable[[], BaseException] | None = None,
        discard_new: bool = False,
    ) -> None:
        self._manager = manager
        self._lock = lock
        self._timeout = timeout
        # None: create the session directory if needed.  Otherwise the session must
        # exist, and ``missing()`` is raised if it does not (nothing is created).
        self._missing = missing
        # True: if the block fails on a session that entering created, remove the
        # session again before releasing, so a failed first write leaves nothing.
        self._discard_new = discard_new
        #: Whether entering created the session directory (the session is new).
        self.created_dir = False

    def _discard_if_new(self) -> None:
        if self._discard_new and self.created_dir:
            fsops.remove_new_session(self._manager.session_dir, os.path.basename(self._lock.path))

    def _on_created_dir(self) -> None:
        self.created_dir = True
        self._manager._on_created_dir()

    def __enter__(self) -> None:
        manager = self._manager
        missing = self._missing
        try:
            waited = self._lock.acquire(
                self._timeout,
                session_id=manager.session_id,
                session_dir=manager.session_dir,
                on_created_dir=self._on_created_dir if missing is None else None,
            )
        except FileNotFoundError:
            if missing is None:
                raise
            raise missing() from None
        if waited is not None and probes.listeners:
            try:
                probes.emit(
                    ProbeEvent(
                        "lock-acquired",
                        manager.session_dir,
                        waited=waited,
                        durable=manager.settings.durable,
                    )
                )
            except BaseException:
                self._discard_if_new()
                self._lock.release()  # the block will not run: do not leak the lock
                raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self._discard_if_new()
        if self._lock.release() and probes.listeners:
            manager = self._manager
            probes.emit(
                ProbeEvent("lock-released", manager.session_dir, durable=manager.settings.durable)
            )
