"""AsyncStateManager: the state manager for asyncio code.

The same files, errors and guarantees as :class:`~pytest_sessionstate.StateManager`
(both can serve one session at once), with what async code needs on top:

* **Exclusion per task.**  The lock belongs to the asyncio *task* that took it,
  not to the thread: two tasks of one loop exclude each other (the sync API,
  re-entrant per thread, would let both in), and a task may take the lock again
  (nested ``lock()``, or an operation inside ``lock()``).
* **The loop never blocks.**  Every file operation and every wait runs in a
  worker thread.  An operation that finds its lock free takes one thread hop in
  all; one that must wait hands the wait to a dedicated pool (so waits never
  starve the threads that holders need for their I/O), then runs as above.
  On the loop's thread, only the manager's construction touches the disk (one
  ``lstat`` of the session path).
* **Cancellation.**  A task cancelled (or timed out by ``asyncio.timeout`` /
  ``wait_for``) while it waits for the lock gets its ``CancelledError`` at once;
  should the abandoned wait be granted later, the lock is released right away.
  A task cancelled during a write gets its ``CancelledError`` once the write is
  done: the document is the old or the new one, never torn, and the lock is free.
* **Real time.**  Timeouts are measured on a real monotonic clock in the worker
  thread, never with the loop's timers, which freezegun's ``freeze_time`` stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .clock import real_monotonic
from .config import Settings, to_seconds
from .jsontypes import JSONObject, Updates
from .lockcontext import LockContext, WouldWait, acting_for
from .locking import LockTimeout
from .state import StateManager

__all__ = ["AsyncLockContext", "AsyncStateManager"]

T = TypeVar("T")

#: At most this many lock waits run at once in a process (more wait their turn).
MAX_WAITING_THREADS = 64
#: A waiting thread checks this often (seconds) whether its task was cancelled.
_WAIT_SLICE = 0.02

_waits: ThreadPoolExecutor | None = None
_waits_lock = threading.Lock()


def _wait_pool() -> ThreadPoolExecutor:
    """The threads that wait for locks, apart from those that do the I/O."""
    global _waits
    pool = _waits
    if pool is None:
        with _waits_lock:
            pool = _waits
            if pool is None:
                pool = _waits = ThreadPoolExecutor(
                    MAX_WAITING_THREADS, thread_name_prefix="sessionstate-wait"
                )
    return pool


def _after_fork_in_child() -> None:
    global _waits, _waits_lock
    _waits = None  # its threads did not survive the fork
    _waits_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _call_for(owner: object, try_once: bool, function: Callable[..., T], *args: Any) -> T:
    with acting_for(owner, try_once=try_once):
        return function(*args)


async def _complete(future: asyncio.Future[T]) -> T:
    """Await a worker thread's result; if cancelled meanwhile, let it finish first.

    The work cannot be stopped half-way (a write in progress, a lock being
    released), so the cancellation is delivered once it is done.
    """
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(future)
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what the caller sees
        raise


def _task() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - a coroutine always runs in a task here
        raise RuntimeError("AsyncStateManager must be used from an asyncio task")
    return task


class AsyncLockContext:
    """What :meth:`AsyncStateManager.lock` returns: an ``async with`` block holding the
    session's exclusive lock for the current task."""

    __slots__ = ("_context", "_task")

    def __init__(self, context: LockContext) -> None:
        self._context = context
        self._task: asyncio.Task[Any] | None = None

    @property
    def context(self) -> LockContext:
        """The underlying lock (its descriptors, inside the block)."""
        return self._context

    async def __aenter__(self) -> None:
        task = self._task = _task()
        cancelled = threading.Event()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(_wait_pool(), self._acquire, task, cancelled)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()  # the waiting thread gives up within one slice
            if future.done() and not future.cancelled() and future.exception() is None:
                self._release_late()
            raise

    def _acquire(self, owner: object, cancelled: threading.Event) -> None:
        """Wait for the lock in slices, so that a cancelled task's wait ends within one.

        A wait that gives up leaves its kernel-queued helper pending, and the next
        slice adopts it: slicing keeps this process's place in the queue.  Granted
        after the task was cancelled, the lock is released at once.
        """
        context = self._context
        total = context.timeout
        start = real_monotonic()
        deadline = start + total
        announce = True
        with acting_for(owner):
            while True:
                if total < 0:
                    step = _WAIT_SLICE
                elif total == 0:
                    step = 0.0
                else:
                    step = min(_WAIT_SLICE, max(deadline - real_monotonic(), 0.0))
                try:
                    context.enter(step, quiet=True, announce=announce, since=start)
                except LockTimeout:
                    announce = False
                    if cancelled.is_set():
                        return
                    if total >= 0 and real_monotonic() >= deadline:
                        raise context._lock_error() from None
                    continue
                if cancelled.is_set():
                    context.__exit__(asyncio.CancelledError, asyncio.CancelledError(), None)
                return

    def _release_late(self) -> None:
        """The wait was granted as the task was cancelled: let go (in a worker thread)."""
        cancelled = asyncio.CancelledError()
        _wait_pool().submit(self._context.__exit__, asyncio.CancelledError, cancelled, None)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        await _complete(loop.run_in_executor(None, self._context.__exit__, exc_type, exc, tb))


class AsyncStateManager:
    """Atomic, durable, locked access to the JSON files of one session, for asyncio code.

    :param session_id: the session's id (validated as by :class:`StateManager`).
    :param settings: where and how to store it; by default the settings in force.
    :raises SessionValueError: if the id is invalid or its path is a symlink.

    Every method has the meaning, the errors and the guarantees of the
    :class:`StateManager` method of the same name; both kinds of manager can
    serve one session at once.  The lock is re-entrant per *task*.
    """

    __slots__ = ("_sync",)

    def __init__(self, session_id: str, *, settings: Settings | None = None) -> None:
        self._sync = StateManager(session_id, settings=settings)

    @property
    def session_id(self) -> str:
        """The session's id."""
        return self._sync.session_id

    @property
    def session_dir(self) -> Path:
        """The session's directory."""
        return self._sync.session_dir

    @property
    def lock_file(self) -> Path:
        """The session's lock file."""
        return self._sync.lock_file

    @property
    def settings(self) -> Settings:
        """The settings this manager uses."""
        return self._sync.settings

    @property
    def sync(self) -> StateManager:
        """A :class:`StateManager` of the same session and settings."""
        return self._sync

    def __repr__(self) -> str:
        return f"AsyncStateManager({self.session_id!r}, settings={self.settings!r})"

    # -- locking -----------------------------------------------------------------

    def lock(self, timeout: float | None = None) -> AsyncLockContext:
        """Hold the session's exclusive lock for an ``async with`` block.

        :param timeout: as for :meth:`StateManager.lock`: None for
            ``settings.lock_timeout``, ``0`` for one attempt, negative for ever;
            real seconds, also under freezegun.
        :raises SessionLockError: if the lock is not acquired in time.

        Excludes other tasks (of this loop or any other), threads and processes;
        re-entrant for the task that holds it.  Cancelling the waiting task leaves
        nothing held.
        """
        seconds = self.settings.lock_timeout if timeout is None else to_seconds(timeout, "timeout")
        return AsyncLockContext(LockContext(self._sync, seconds))

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """Run a sync operation in a worker thread, for this task."""
        loop = asyncio.get_running_loop()
        return await _complete(
            loop.run_in_executor(None, _call_for, _task(), False, function, *args)
        )

    async def _run_locked(self, function: Callable[..., T], *args: Any) -> T:
        """Run a sync operation that takes the lock: in one hop when the lock is free (or
        this task holds it); else wait for it in the wait pool first."""
        loop = asyncio.get_running_loop()
        task = _task()
        try:
            return await _complete(
                loop.run_in_executor(None, _call_for, task, True, function, *args)
            )
        except WouldWait:
            pass
        async with self.lock():
            return await _complete(
                loop.run_in_executor(None, _call_for, task, False, function, *args)
            )

    # -- reading and writing -------------------------------------------------------

    async def read_json(self, filename: str) -> JSONObject:
        """The JSON object stored in ``filename`` (see :meth:`StateManager.read_json`)."""
        return await self._run(self._sync.read_json, filename)

    async def write_json(self, filename: str, data: Mapping[str, Any]) -> None:
        """Replace ``filename`` with ``data``, atomically and durably
        (see :meth:`StateManager.write_json`)."""
        await self._run_locked(self._sync.write_json, filename, data)

    async def update_json(self, filename: str, updates: Updates) -> JSONObject:
        """Apply dot-path ``updates`` under one lock; return the new document
        (see :meth:`StateManager.update_json`)."""
        return await self._run_locked(self._sync.update_json, filename, updates)

    @contextlib.asynccontextmanager
    async def transaction(
        self, filename: str, *, default: Mapping[str, Any] | None = None
    ) -> AsyncIterator[JSONObject]:
        """Read, change in place, write back, all under the lock
        (see :meth:`StateManager.transaction`).

        On normal exit the dict is written atomically; on exception (cancellation
        included) nothing is.
        """
        filename, context = self._sync._transaction_lock(filename, default)
        async with AsyncLockContext(context):
            document = await self._run(self._sync._transaction_start, context, filename, default)
            yield document
            await self._run(self._sync._transaction_commit, context, filename, document)

    # -- the session as a whole -----------------------------------------------------

    async def exists(self, filename: str | None = None) -> bool:
        """Whether the session (or one of its files) exists."""
        return await self._run(self._sync.exists, filename)

    async def list_files(self) -> list[str]:
        """The session's files, sorted (see :meth:`StateManager.list_files`)."""
        return await self._run(self._sync.list_files)

    async def delete(self, filename: str | None = None) -> None:
        """Remove one file, or the whole session when ``filename`` is None, under the lock."""
        await self._run_locked(self._sync.delete, filename)
