"""The session lock as the state manager holds it: find the session, lock it, check it.

:class:`~pytest_sessionstate.locking.SessionLock` is a lock; this module knows
what a session is.  Entering a :class:`LockContext`:

1. opens the root, then the session directory under it without following a
   symlink (creating it ``0700`` when the operation may create the session);
2. finds the process's lock of that *directory* by its ``(st_dev, st_ino)``, so
   every path to the session reaches one lock, and acquires it;
3. checks, once it holds the lock, that the directory still is the session's
   entry in the root and that its lock file still is ``.lock`` in it.  A delete
   (or a swap) while it waited means the lock it holds is not the session's any
   more: it lets go and starts over.

While the lock is held, every operation goes through the directory descriptor
kept here, so nothing that happens to the paths meanwhile can lead it elsewhere.

A whole-session ``delete()`` inside a nested block empties the session at once
but keeps the directory and its lock file until the outermost block exits, so
the block keeps excluding everybody else to its end.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from . import fsops, probes
from .clock import real_monotonic
from .errors import SessionLockError
from .locking import LockTimeout, SessionLock, lock_for
from .names import is_valid_name
from .probes import ProbeEvent

if TYPE_CHECKING:
    from .state import StateManager

__all__ = ["LockContext", "WouldWait", "acting_for", "current_owner", "current_task"]

_get_ident = threading.get_ident

# Who a thread acts for when it is not itself the owner: the asyncio task whose
# operation it runs (see :mod:`pytest_sessionstate.asyncstate`).
_acting = threading.local()


def current_owner() -> object:
    """The owner a lock taken now belongs to: the task this thread acts for, else the thread."""
    owner = getattr(_acting, "owner", None)
    return _get_ident() if owner is None else owner


class WouldWait(Exception):
    """Raised instead of waiting for a lock, in :func:`acting_for` ``try_once`` mode."""


@contextlib.contextmanager
def acting_for(owner: object, *, try_once: bool = False) -> Iterator[None]:
    """Take and release locks in this thread on behalf of ``owner`` (an asyncio task).

    :param try_once: make each new acquisition a single attempt that raises
        :class:`WouldWait` when the lock is taken, so the caller can wait elsewhere.
    """
    previous = getattr(_acting, "owner", None), getattr(_acting, "try_once", False)
    _acting.owner = owner
    _acting.try_once = try_once
    try:
        yield
    finally:
        _acting.owner, _acting.try_once = previous


#: Forked children count up: a block entered before a fork holds nothing after it.
_generation = 0


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_after_fork_in_child)


def current_task() -> object:
    """The running asyncio task of this thread, or None (asyncio is never imported here)."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return None
    loop = asyncio._get_running_loop()
    if loop is None:
        return None
    return asyncio.current_task(loop)


class LockContext:
    """What :meth:`StateManager.lock() <pytest_sessionstate.StateManager.lock>` returns:
    a context manager holding the session's exclusive lock.

    :ivar created_dir: whether entering created the session directory.
    :ivar dir_fd: the locked session directory's descriptor, inside the block.
    """

    __slots__ = (
        "_discard_new",
        "_generation",
        "_lock",
        "_manager",
        "_missing",
        "_owner",
        "_timeout",
        "_trying",
        "created_dir",
        "dir_fd",
    )

    def __init__(
        self,
        manager: StateManager,
        timeout: float,
        *,
        missing: Callable[[], BaseException] | None = None,
        discard_new: bool = False,
    ) -> None:
        self._manager = manager
        self._timeout = timeout
        # None: create the session directory if needed.  Otherwise the session must
        # exist, and ``missing()`` is raised if it does not (nothing is created).
        self._missing = missing
        # True: if the block fails on a session that entering created, remove the
        # session again before releasing, so a failed first write leaves nothing.
        self._discard_new = discard_new
        self._lock: SessionLock | None = None
        self._owner: object = None
        self._generation = -1
        # While entering: the lock being acquired, and its depth before (see _undo).
        self._trying: tuple[SessionLock, int] | None = None
        self.created_dir = False
        self.dir_fd = -1

    @property
    def lock(self) -> SessionLock:
        """The held lock (inside the block).

        :raises RuntimeError: outside the block.
        """
        if self._lock is None:
            raise RuntimeError("this lock() block was not entered, or did not take the lock")
        return self._lock

    def _lock_error(self) -> SessionLockError:
        manager = self._manager
        root = str(manager.settings.root)
        return SessionLockError(
            f"could not acquire the lock of session {manager.session_id!r} within "
            f"{self._timeout}s (root {root!r})",
            details={
                "session_id": manager.session_id,
                "timeout": self._timeout,
                "lock_file": str(manager.lock_file),
                "root": root,
            },
        )

    @property
    def timeout(self) -> float:
        """The timeout it was made with (seconds; 0 one attempt, negative for ever)."""
        return self._timeout

    def __enter__(self) -> None:
        if getattr(_acting, "try_once", False):
            try:
                self.enter(0.0, quiet=True)
            except LockTimeout:
                raise WouldWait from None
        else:
            self.enter(self._timeout)

    def enter(
        self,
        timeout: float,
        *,
        quiet: bool = False,
        announce: bool = True,
        since: float | None = None,
    ) -> None:
        """Acquire, waiting at most ``timeout`` seconds (the sliced waits of async code).

        :param quiet: raise :class:`~pytest_sessionstate.locking.LockTimeout` on
            timeout instead of :class:`SessionLockError`.
        :param announce: pass the ``lock-waiting`` probe point if it has to wait.
        :param since: when the acquisition began, for the ``lock-acquired`` event.
        """
        manager = self._manager
        owner = self._owner = current_owner()
        start = real_monotonic()
        deadline = start + timeout
        session_dir = manager.session_dir

        def on_wait() -> None:
            if announce and probes.listeners:
                probes.emit(ProbeEvent("lock-waiting", session_dir))

        try:
            while True:
                try:
                    waited = self._attempt(owner, timeout, on_wait)
                except LockTimeout:
                    if quiet:
                        raise
                    raise self._lock_error() from None
                if waited is not False:
                    break
                # The session moved or went while we waited: try again, within the deadline.
                if timeout > 0:
                    timeout = deadline - real_monotonic()
                    if timeout <= 0:
                        if quiet:
                            raise LockTimeout
                        raise self._lock_error()
            if waited is not None and since is not None:
                waited += start - since
            self._generation = _generation
        except BaseException:
            # An exception may land anywhere (a signal handler's, KeyboardInterrupt),
            # also just after the lock was granted: then the block will never run and
            # its __exit__ never comes, so let go of what this call took.
            self._undo(owner)
            raise
        if waited is not None and probes.listeners:
            try:
                probes.emit(
                    ProbeEvent(
                        "lock-acquired",
                        session_dir,
                        waited=waited,
                        durable=manager.settings.durable,
                    )
                )
            except BaseException:
                self._leave(failed=True)  # the block will not run: do not leak the lock
                raise

    def _attempt(
        self, owner: object, timeout: float, on_wait: Callable[[], None]
    ) -> float | bool | None:
        """One try: the seconds waited, None if re-entrant, False to start over."""
        manager = self._manager
        path = str(manager.session_dir)
        try:
            dir_fd, created = fsops.open_session(path, create=self._missing is None)
        except FileNotFoundError:
            if self._missing is None:  # pragma: no cover - open_session creates it
                raise
            raise self._missing() from None
        if created:
            self.created_dir = True
        try:
            waited = self._lock_dir(
                path, dir_fd, owner=owner, timeout=timeout, on_wait=on_wait, created=created
            )
        except FileNotFoundError:
            # The directory was deleted after we opened it (its lock file cannot be
            # made in it any more): start over on whatever is at the path now.
            os.close(dir_fd)
            return False
        except BaseException:
            trying = self._trying
            handed = trying is not None and trying[0].dir_fd == dir_fd  # to the lock
            if created:
                if not handed:
                    self._discard_debris(dir_fd)
                elif trying is not None and trying[0].owner() == owner:
                    self._remove_if_new(dir_fd)  # held: its lock file and marker go too
                else:  # pragma: no cover - handed to a lock that another owner holds
                    self._remove_if_new(-1)
            if not handed:
                os.close(dir_fd)
            raise
        if waited is False or waited is None:
            os.close(dir_fd)
        return waited

    def _lock_dir(
        self,
        path: str,
        dir_fd: int,
        *,
        owner: object,
        timeout: float,
        on_wait: Callable[[], None],
        created: bool,
    ) -> float | bool | None:
        manager = self._manager
        if created:
            if self._discard_new:
                # A first write: until its file is in place, this directory is not
                # a session (a kill now must not leave an empty one behind).
                fsops.mark_unborn(dir_fd, durable=manager.settings.durable)
            if manager.settings.durable:
                fsops.fsync_dir(os.path.dirname(path))
            if probes.listeners:
                probes.emit(
                    ProbeEvent("dir-created", manager.session_dir, durable=manager.settings.durable)
                )
        info = os.fstat(dir_fd)
        lock = lock_for((info.st_dev, info.st_ino))
        holder = lock.owner()
        self._trying = (lock, lock.depth if holder == owner else 0)
        if holder is not None and holder != owner and not isinstance(holder, int):
            self._refuse_if_same_loop(holder)
        lock_path = str(manager.lock_file)
        waited = lock.acquire(
            owner, timeout, lambda: fsops.open_lock_file(dir_fd, lock_path), on_wait
        )
        self._lock = lock
        if waited is None:
            task = lock.task
            if task is not None and task is not current_task():
                lock.release(owner)
                raise self._task_error()
            self.dir_fd = lock.dir_fd
            return None
        # Held now: is it still this session's directory, and its lock file?  (A
        # delete while we waited moved both away: start over.)
        identity = lock.identity
        if not (
            fsops.same_entry(path, info)
            and isinstance(identity, tuple)
            and fsops.lock_file_is(dir_fd, identity)
        ):
            lock.release(owner, keep_fd=False)
            self._lock = None
            return False
        lock.dir_fd = self.dir_fd = dir_fd
        lock.task = current_task()
        if not created and self._missing is None and not self._discard_new:
            # lock() makes the session: also one a killed first write left unborn.
            fsops.clear_unborn(dir_fd)
        return waited

    def _undo(self, owner: object) -> None:
        """Release what an interrupted :meth:`enter` acquired, if anything."""
        trying, self._trying = self._trying, None
        if trying is None:
            return
        lock, before = trying
        if lock.owner() == owner and lock.depth > before:
            self._release(lock, owner, keep=False)

    def _refuse_if_same_loop(self, holder: object) -> None:
        """Waiting here for a task of the loop this thread runs would freeze that loop,
        and with it the holder: refuse at once."""
        task = current_task()
        get_loop = getattr(holder, "get_loop", None)
        if task is not None and get_loop is not None and get_loop() is task.get_loop():  # type: ignore[attr-defined]
            raise self._task_error()

    def _task_error(self) -> SessionLockError:
        session_id = self._manager.session_id
        return SessionLockError(
            f"the lock of session {session_id!r} is held by another asyncio task of this "
            "thread: StateManager.lock() excludes threads, not tasks; use AsyncStateManager "
            "in async code",
            details={"session_id": session_id, "timeout": self._timeout, "problem": "asyncio task"},
        )

    def _discard_debris(self, dir_fd: int) -> None:
        """Undo the creation of a session whose first write failed before it held the
        lock (a probe listener's error, an fsync, EMFILE...): the marker and the
        directory go, unless a lock file is in it by now (then someone else is making
        it a session, and the marker tells what it is until they do)."""
        with contextlib.suppress(OSError):
            try:
                names = os.listdir(dir_fd)
            except OSError:  # no descriptor to list it with: look for the lock file
                try:
                    os.stat(fsops.LOCK_NAME, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    names = [fsops.UNBORN_NAME]
                else:
                    return
            if set(names) <= {fsops.UNBORN_NAME}:
                fsops.clear_unborn(dir_fd)  # it may never have been made (EMFILE)
                os.rmdir(self._manager.session_dir)

    def _remove_if_new(self, dir_fd: int) -> None:
        """Undo the creation of a session whose first write failed (lock held through
        ``dir_fd``, or never taken: -1): the directory goes only if it holds nothing
        but its lock file and the first write's marker (gone if a ``lock()`` took the
        session meanwhile: then it is someone's session, and stays).

        Needs no new descriptor when the listing cannot get one (the write may have
        failed with EMFILE): then the lock file is unlinked (safe while we hold it:
        waiters on it start over) and ``rmdir`` refuses a directory that is not empty.
        The marker goes last: a kill half way leaves debris, never a session.
        """
        with contextlib.suppress(OSError):
            if dir_fd >= 0:
                try:
                    names = sorted(os.listdir(dir_fd))
                    if names != [fsops.UNBORN_NAME, fsops.LOCK_NAME]:
                        if fsops.UNBORN_NAME in names and any(map(is_valid_name, names)):
                            # The write failed after its file was in place (an error at
                            # ``replaced`` or later): the session exists, with it.
                            fsops.clear_unborn(dir_fd)
                        return
                except OSError:
                    # No descriptor to list it with: let rmdir judge the rest.
                    os.stat(fsops.UNBORN_NAME, dir_fd=dir_fd, follow_symlinks=False)
                os.unlink(fsops.LOCK_NAME, dir_fd=dir_fd)
                os.unlink(fsops.UNBORN_NAME, dir_fd=dir_fd)
            os.rmdir(self._manager.session_dir)

    def _leave(self, *, failed: bool) -> bool:
        """Release one level; at the outermost, finish what the block left pending."""
        lock = self.lock
        owner = self._owner
        if self._generation != _generation:  # entered before a fork: nothing held here
            return False
        manager = self._manager
        keep = True
        if lock.depth == 1:
            try:
                if lock.delete_pending:
                    keep = False
                    self._remove_session()
                elif failed and self._discard_new and self.created_dir:
                    keep = False
                    self._remove_if_new(lock.dir_fd)
            except BaseException:
                self._release(lock, owner, keep=False)
                raise
        free = self._release(lock, owner, keep=keep)
        if free and probes.listeners:
            probes.emit(
                ProbeEvent("lock-released", manager.session_dir, durable=manager.settings.durable)
            )
        return free

    def _release(self, lock: SessionLock, owner: object, *, keep: bool) -> bool:
        dir_fd = lock.dir_fd if lock.depth == 1 else -1
        free = lock.release(owner, keep_fd=keep)
        if free and dir_fd >= 0:
            os.close(dir_fd)
        return free

    def remove_session(self) -> None:
        """Delete the whole session: at once if this is the outermost block, else empty it
        now and remove the directory when the outermost block exits."""
        lock = self.lock
        if lock.depth > 1:
            fsops.remove_documents(lock.dir_fd, durable=self._manager.settings.durable)
            lock.delete_pending = True
        else:
            lock.delete_pending = True  # removed as this block exits

    def _remove_session(self) -> None:
        manager = self._manager
        dir_fd = self.lock.dir_fd
        # Only the directory we hold: never what may have been put at its path.
        if fsops.same_entry(str(manager.session_dir), os.fstat(dir_fd)):
            fsops.remove_session(dir_fd, manager.session_dir, durable=manager.settings.durable)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave(failed=exc_type is not None)
