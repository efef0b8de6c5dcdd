"""The session lock: exclusive across processes and threads, re-entrant per owner.

This module is a lock and nothing else; what a session is (its directory, its
lock file, creation and deletion) is the state manager's business.

How the pieces fit, and why:

* Between processes, an OS lock on the session's lock file: ``flock`` on POSIX,
  one byte of ``LockFileEx`` on Windows.  The kernel drops it the moment its
  holder dies, so a SIGKILLed holder never blocks the next acquirer, and the
  file is never unlinked on release (unlinking lets two processes lock two
  different inodes: filelock #27, #574).
* The single non-blocking attempt and the release go through filelock's
  ``lock_descriptor`` / ``unlock_descriptor``, the native primitive of each
  platform over a descriptor we own.
* filelock's ``FileLock`` polls, and measures its timeout with
  ``time.perf_counter``, which freezegun freezes.  Here a contended wait is a
  blocking ``flock`` in a pooled helper thread (the kernel queues waiters and
  wakes one on release), while the caller waits for it with its deadline on a
  real monotonic clock.  A wait that ends early (timeout, or any exception:
  KeyboardInterrupt, a signal handler's error) *abandons* the helper: the next
  acquisition in this process adopts it, and if the lock is granted while
  nobody wants it the helper lets go at once.
* Between threads (or asyncio tasks, see ``owner``) of one process, a
  ``threading.Lock`` per session in front of the OS lock, and re-entrancy by
  owner and count.  One :class:`SessionLock` per session *directory*, found by
  its ``(st_dev, st_ino)``: every path to it (a symlinked root, a bind mount)
  reaches the same lock, so a nested acquisition never deadlocks on itself.
* Descriptors: every lock file descriptor is tracked; a forked child closes the
  ones it inherited (without unlocking: the parent's locks stay the parent's),
  so a child never holds, keeps or blocks a lock it did not take.  Opens and
  closes are atomic with respect to ``fork``.  Released descriptors are kept
  open for reuse (an ``open`` and a ``close`` saved per acquisition), but only
  for the :data:`MAX_IDLE` sessions used last: any number of live
  :class:`~pytest_sessionstate.StateManager` objects works under a low
  ``ulimit -n``.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import sys
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable

from .clock import real_monotonic

if sys.platform != "win32":  # pragma: no branch
    import fcntl
else:  # pragma: no cover
    fcntl = None

__all__ = ["MAX_IDLE", "LockTimeout", "SessionLock", "lock_for"]

#: How many sessions keep their released lock file open for the next acquisition.
MAX_IDLE = 16

_lock_descriptor: Callable[..., bool] | None = None
_unlock_descriptor: Callable[[int], None] | None = None


def _filelock() -> tuple[Callable[..., bool], Callable[[int], None]]:
    """filelock's descriptor lock, imported on first use (it costs ~10 ms to import)."""
    global _lock_descriptor, _unlock_descriptor
    if _lock_descriptor is None or _unlock_descriptor is None:
        from filelock import lock_descriptor, unlock_descriptor

        _lock_descriptor, _unlock_descriptor = lock_descriptor, unlock_descriptor
    return _lock_descriptor, _unlock_descriptor


class LockTimeout(Exception):
    """The deadline passed before the lock was free (the caller words the error)."""


# -- descriptors, safe across fork -----------------------------------------------------

_fd_mutex = _thread.allocate_lock()
# Every open lock file descriptor, with what the opener said of it (its identity).
_tracked: dict[int, Hashable] = {}


def open_tracked(opener: Callable[[], tuple[int, Hashable]]) -> int:
    """Run ``opener`` (which returns a descriptor and the file's identity) and track
    the descriptor (no fork in between)."""
    with _fd_mutex:
        fd, identity = opener()
        _tracked[fd] = identity
    return fd


def identity_of(fd: int) -> Hashable:
    """The identity the opener gave for a tracked descriptor (None if untracked)."""
    return _tracked.get(fd)


def _close(fd: int, *, unlock: bool = True) -> None:
    """Unlock (so no inherited copy keeps the lock) and close a tracked descriptor."""
    if unlock and fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
    with _fd_mutex:
        _tracked.pop(fd, None)
        with contextlib.suppress(OSError):
            os.close(fd)


def _before_fork() -> None:
    _fd_mutex.acquire()


def _after_fork_in_parent() -> None:
    _fd_mutex.release()


# -- the hand-over from a helper thread ----------------------------------------------


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

    The caller waits for it with a real deadline.  When the caller stops waiting
    (timeout or exception) the waiter is *abandoned* but stays queued: the next
    acquisition in this process adopts it instead of queueing again; if the lock
    is granted while nobody wants it, the helper releases it at once.

    The helper comes from a small pool of idle threads (:func:`_submit`): under
    contention every acquisition waits, and starting a thread for each halved the
    throughput on two cores.
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
                _close(self.fd)  # nobody wants it any more: let go at once
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


# -- the lock -------------------------------------------------------------------------

#: Sessions whose released lock file is kept open, least recently used first.
_idle: OrderedDict[SessionLock, None] = OrderedDict()
_idle_mutex = _thread.allocate_lock()


class SessionLock:
    """The process-wide state of one session directory's lock.

    Obtain it with :func:`lock_for`; use it through
    :meth:`StateManager.lock() <pytest_sessionstate.StateManager.lock>`.  The
    caller that holds it may keep per-hold state in :attr:`dir_fd` (the session
    directory it locked) and :attr:`delete_pending`.
    """

    __slots__ = (
        "__weakref__",
        "_count",
        "_fd",
        "_idle_fd",
        "_owner",
        "_pending",
        "_threads",
        "delete_pending",
        "dir_fd",
        "key",
        "task",
    )

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self._threads = threading.Lock()
        self._owner: Hashable | None = None
        self._count = 0
        self._fd = -1
        self._idle_fd = -1
        # A waiter abandoned by an acquisition that stopped waiting, still queued.
        self._pending: _Waiter | None = None
        #: The holder's descriptor of the session directory (-1 when free).
        self.dir_fd = -1
        #: Whether the holder deleted the session inside a nested block: the
        #: directory goes when the outermost block exits.
        self.delete_pending = False
        #: The asyncio task that took the lock through the sync API, if any.
        self.task: object = None

    @property
    def fd(self) -> int:
        """The locked descriptor of the lock file (-1 when free)."""
        return self._fd

    @property
    def identity(self) -> Hashable:
        """The identity of the locked file, as its opener gave it (None when free)."""
        return identity_of(self._fd) if self._fd >= 0 else None

    @property
    def depth(self) -> int:
        """How many times the holder has acquired it (0 when free)."""
        return self._count

    def owner(self) -> Hashable | None:
        """Who holds it (a thread ident, or another owner token), None when free."""
        return self._owner

    def acquire(
        self,
        owner: Hashable,
        timeout: float,
        open_lock_file: Callable[[], tuple[int, Hashable]],
        on_wait: Callable[[], None] | None = None,
    ) -> float | None:
        """Acquire for ``owner``; return the seconds waited, or None if ``owner`` held it.

        :param timeout: seconds; 0 for one attempt, negative to wait for ever.
        :param open_lock_file: opens the lock file when no kept descriptor serves;
            returns the descriptor and the file's identity (see :attr:`identity`).
        :param on_wait: called once, when the acquisition is about to wait.
        :raises LockTimeout: if the lock is not free within ``timeout`` seconds; any
            exception (an interrupt included) leaves nothing held.
        """
        if self._owner == owner:
            self._count += 1
            return None
        start = real_monotonic()
        deadline = start + timeout
        waited = False

        def waiting() -> None:
            nonlocal waited
            if not waited:
                waited = True
                if on_wait is not None:
                    on_wait()

        if not self._threads.acquire(False):
            if timeout == 0:
                raise LockTimeout
            waiting()
            wait = -1.0 if timeout < 0 else min(timeout, threading.TIMEOUT_MAX)
            if not self._threads.acquire(True, wait):
                raise LockTimeout
        try:
            self._fd = self._os_acquire(timeout, deadline, open_lock_file, waiting)
            self._owner = owner
            self._count = 1
        except BaseException:
            self._threads.release()
            raise
        return real_monotonic() - start

    def _take_idle(self) -> int:
        with _idle_mutex:
            fd, self._idle_fd = self._idle_fd, -1
            _idle.pop(self, None)
        return fd

    def _os_acquire(
        self,
        timeout: float,
        deadline: float,
        open_lock_file: Callable[[], tuple[int, Hashable]],
        waiting: Callable[[], None],
    ) -> int:
        """Take the OS lock (the thread lock is held); return the locked descriptor."""
        lock_descriptor, _ = _filelock()
        pending, self._pending = self._pending, None
        if pending is not None and pending.adopt():
            if not pending.done.is_set():
                waiting()
            return self._wait_for(pending, timeout, deadline, grace=_ADOPT_GRACE)
        fd = self._take_idle()
        if fd < 0:
            fd = open_tracked(open_lock_file)
        try:
            if lock_descriptor(fd, blocking=False):
                return fd
            if timeout == 0:
                raise LockTimeout
            waiting()
            if fcntl is None:  # pragma: no cover - Windows
                _poll(lock_descriptor, fd, timeout, deadline)
                return fd
            if timeout < 0:
                fcntl.flock(fd, fcntl.LOCK_EX)  # interrupted: nothing is held
                return fd
        except BaseException:
            _close(fd, unlock=False)
            raise
        waiter = _Waiter(fd)  # the waiter owns the descriptor now
        return self._wait_for(waiter, timeout, deadline, grace=0.0)

    def _wait_for(self, waiter: _Waiter, timeout: float, deadline: float, *, grace: float) -> int:
        """Wait for ``waiter`` until the deadline; keep it pending if we stop waiting."""
        try:
            if timeout < 0:
                granted = waiter.done.wait(None)
            else:
                seconds = min(max(deadline - real_monotonic(), grace), threading.TIMEOUT_MAX)
                granted = waiter.done.wait(seconds)
        except BaseException:
            # Interrupted (KeyboardInterrupt, a signal handler's exception...): never
            # leave a grant behind that nobody will release.
            if waiter.abandon():
                self._pending = waiter
            else:
                _close(waiter.fd)
            raise
        if not granted and waiter.abandon():
            self._pending = waiter
            raise LockTimeout
        if waiter.error is not None:  # pragma: no cover
            _close(waiter.fd, unlock=False)
            raise waiter.error
        return waiter.fd

    def release(self, owner: Hashable, *, keep_fd: bool = True) -> bool:
        """Release one level; True if the lock is now free.

        :param keep_fd: keep the lock file open for the next acquisition (False when
            it is known to be stale: deleted or replaced).
        :raises RuntimeError: if ``owner`` does not hold the lock.
        """
        if self._owner != owner:
            raise RuntimeError(f"the lock {self.key!r} is not held by {owner!r}")
        self._count -= 1
        if self._count:
            return False
        fd, self._fd, self._owner = self._fd, -1, None
        self.dir_fd = -1
        self.delete_pending = False
        self.task = None
        try:
            _, unlock_descriptor = _filelock()
            try:
                unlock_descriptor(fd)
            except BaseException:
                _close(fd, unlock=False)  # closing releases the lock in any case
                raise
            if keep_fd:
                self._keep_idle(fd)
            else:
                _close(fd, unlock=False)
        finally:
            self._threads.release()
        return True

    def _keep_idle(self, fd: int) -> None:
        evicted: list[int] = []
        with _idle_mutex:
            if self._idle_fd >= 0:  # pragma: no cover - only one descriptor is ever idle
                evicted.append(self._idle_fd)
            self._idle_fd = fd
            _idle[self] = None
            _idle.move_to_end(self)
            while len(_idle) > MAX_IDLE:
                oldest, _ = _idle.popitem(last=False)
                if oldest._idle_fd >= 0:
                    evicted.append(oldest._idle_fd)
                    oldest._idle_fd = -1
        for old in evicted:
            _close(old, unlock=False)

    def __del__(self) -> None:
        fd, self._idle_fd = self._idle_fd, -1
        if fd >= 0:
            # At interpreter exit the module's globals may be gone already.
            with contextlib.suppress(Exception):
                _close(fd, unlock=False)

    def _forget_after_fork(self) -> None:
        # The child's copies of our descriptors are closed by _after_fork_in_child.
        self._idle_fd = -1
        self._fd = -1
        self.dir_fd = -1
        self._pending = None
        self._owner = None
        self._count = 0
        self.delete_pending = False
        self.task = None
        self._threads = threading.Lock()


def _poll(
    lock_descriptor: Callable[..., bool], fd: int, timeout: float, deadline: float
) -> None:  # pragma: no cover - platforms without flock
    """Retry the non-blocking attempt against the real deadline (no kernel queue here)."""
    delay = 0.001
    while not lock_descriptor(fd, blocking=False):
        if timeout > 0 and real_monotonic() + delay > deadline:
            raise LockTimeout
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


_registry: weakref.WeakValueDictionary[Hashable, SessionLock] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def lock_for(key: Hashable) -> SessionLock:
    """The process's :class:`SessionLock` of the session directory ``key``
    (its ``(st_dev, st_ino)``)."""
    lock = _registry.get(key)
    if lock is None:
        with _registry_lock:
            lock = _registry.get(key)
            if lock is None:
                lock = SessionLock(key)
                _registry[key] = lock
    return lock


def existing_lock(key: Hashable) -> SessionLock | None:
    """The :class:`SessionLock` of ``key`` if this process has one (nothing is made)."""
    return _registry.get(key)


def _after_fork_in_child() -> None:
    global _registry_lock, _pool_lock, _idle_mutex, _fd_mutex
    inherited = list(_tracked)
    _tracked.clear()
    for fd in inherited:  # not unlocked: the parent's locks stay the parent's
        with contextlib.suppress(OSError):
            os.close(fd)
    _fd_mutex = _thread.allocate_lock()
    _registry_lock = threading.Lock()
    _pool_lock = _thread.allocate_lock()
    _idle_mutex = _thread.allocate_lock()
    _idle_helpers.clear()  # their threads did not survive the fork
    _idle.clear()
    for lock in list(_registry.values()):
        lock._forget_after_fork()


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
