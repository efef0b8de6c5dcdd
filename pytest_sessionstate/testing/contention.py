"""The contention simulator: prove that session-state code survives concurrency,
and replay a race on every run instead of once a week.

The ``contention`` fixture gives a :class:`ContentionSimulator` bound to the
test's settings::

    def test_tickets_survive_contention(contention, make_session):
        session = make_session(files={"session.json": {"tickets_issued": 0}})
        result = contention.run(next_ticket, args=(session.session_id,), workers=6, iterations=25)
        result.raise_errors()
        assert sorted(result.returns) == list(range(1, 151))

What it offers:

* :meth:`~ContentionSimulator.run`: many workers (processes, or threads) released
  together by one barrier, each calling the target in a loop; every return value
  and error is collected into a :class:`ContentionResult`.
* :meth:`~ContentionSimulator.hold_lock` and :meth:`~ContentionSimulator.stale_lock`:
  a real other process that holds a session's lock, or that died holding it.
* :meth:`~ContentionSimulator.interleave`: two calls interleaved at a probe point,
  the same way every time.

The parts live in :mod:`~pytest_sessionstate.testing.workers`,
:mod:`~pytest_sessionstate.testing.lockholder`,
:mod:`~pytest_sessionstate.testing.interleave` and
:mod:`~pytest_sessionstate.testing.results`; this module is the front door.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar, overload

from ..config import Settings, current_settings
from ..errors import SessionError
from ..probes import ProbePoint
from ..state import StateManager
from . import checks, lockholder
from . import interleave as _interleave
from . import workers as _workers
from .interleave import PROBE_POINTS, check_probe_point
from .lockholder import KilledHolder, LockHolder
from .processes import Children, context_for
from .results import (
    CallOutcome,
    ContentionError,
    ContentionResult,
    InterleaveResult,
    WorkerDiedError,
    WorkerError,
    WorkerTimeoutError,
)
from .workers import CONTENTION_MODES, MODES, ContentionMode

#: What the target of a run returns.
T = TypeVar("T")

__all__ = [
    "CONTENTION_MODES",
    "MODES",
    "PROBE_POINTS",
    "CallOutcome",
    "ContentionError",
    "ContentionResult",
    "ContentionSimulator",
    "InterleaveResult",
    "KilledHolder",
    "LockHolder",
    "WorkerDiedError",
    "WorkerError",
    "WorkerTimeoutError",
]


def _remove_if_empty(manager: StateManager) -> None:
    """Remove a session that holds no file, if its lock is free at once (else, or if
    it holds files, someone is using it: leave it)."""
    try:
        with manager.lock(timeout=0):
            if manager.exists() and not manager.list_files():
                manager.delete()
    except (SessionError, OSError):
        pass


class ContentionSimulator:
    """Concurrency on demand for tests of session-state code.

    :param settings: the settings used to resolve session ids given to
        :meth:`hold_lock` and :meth:`stale_lock`; by default the settings in force.
        Workers of :meth:`run` see the settings in force when ``run`` is called (the
        ``contention`` fixture's test settings).
    :param start_method: how worker and holder processes are started: ``"fork"``
        (the default where the platform has it: the target may be a lambda or a
        closure) or ``"spawn"`` (the default elsewhere: the target and its arguments
        must pickle, so a module-level function).
    :raises ValueError: if ``start_method`` is not available here.

    Use it through the ``contention`` fixture, or as a context manager: on
    :meth:`close` nothing it started is left running.
    """

    def __init__(
        self, settings: Settings | None = None, *, start_method: str | None = None
    ) -> None:
        if settings is not None and not isinstance(settings, Settings):
            raise TypeError(f"settings must be a Settings, not {type(settings).__name__}")
        self._settings = settings if settings is not None else current_settings()
        self._context = context_for(start_method)
        self._children = Children()

    @property
    def settings(self) -> Settings:
        """The settings session ids are resolved with."""
        return self._settings

    @property
    def start_method(self) -> str:
        """``"fork"`` or ``"spawn"``: how worker processes are started."""
        return str(self._context.get_start_method())

    # -- many workers --------------------------------------------------------------------

    @overload
    def run(  # a coroutine function: its result is what the coroutine returns
        self,
        target: Callable[..., Coroutine[Any, Any, T]],
        *,
        args: Sequence[Any] = ...,
        kwargs: Mapping[str, Any] | None = ...,
        workers: int = ...,
        iterations: int = ...,
        mode: ContentionMode = ...,
        timeout: float = ...,
    ) -> ContentionResult[T]: ...

    @overload
    def run(
        self,
        target: Callable[..., T],
        *,
        args: Sequence[Any] = ...,
        kwargs: Mapping[str, Any] | None = ...,
        workers: int = ...,
        iterations: int = ...,
        mode: ContentionMode = ...,
        timeout: float = ...,
    ) -> ContentionResult[T]: ...

    def run(
        self,
        target: Callable[..., Any],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        workers: int = 4,
        iterations: int = 1,
        mode: ContentionMode = "process",
        timeout: float = 60.0,
    ) -> ContentionResult[Any]:
        """Call ``target(*args, **kwargs)`` ``iterations`` times in each of ``workers``
        workers that start together.

        The workers are processes (``mode="process"``, started with
        :attr:`start_method`), threads of this process (``mode="thread"``), or
        tasks of one new event loop (``mode="task"``, run in a thread of its own).
        ``target`` may be a coroutine function in every mode: in process and thread
        workers each call runs in an event loop of its own; tasks await it.  (The
        lock waits of a coroutine run by a thread worker happen in executor threads
        and are not counted in ``lock_waits``.)  Each
        starts, reports ready, and waits; when all are ready one event releases them
        at once.  Every return value and every error (worker, iteration, exception
        type, message, traceback text) is collected; so is the wait of every lock
        acquisition they make (at the ``lock-acquired`` probe point).

        :param timeout: seconds for the whole run, start-up included.  A worker
            process still running then is SIGKILLed; a worker thread is told to stop
            at its next probe point (threads cannot be killed).  Either way it is
            reported in :attr:`ContentionResult.errors` as a
            :class:`~pytest_sessionstate.testing.contention.WorkerTimeoutError` and listed in
            :attr:`ContentionResult.timed_out`.
        :returns: a :class:`ContentionResult`; call its
            :meth:`~ContentionResult.raise_errors` to fail the test on any error.
        :raises ValueError: for ``workers`` or ``iterations`` below 1, an unknown
            ``mode``, or a timeout that is not a positive number.
        :raises TypeError: if ``target`` is not callable, an argument has the wrong
            type (a float ``workers``, a str ``timeout``), or (``spawn`` only) the
            target or its arguments do not pickle.

        No worker process is left running when this returns, also when it raises
        (``KeyboardInterrupt`` included).
        """
        checks.callable_("target", target)
        workers = checks.integer("workers", workers, minimum=1)
        iterations = checks.integer("iterations", iterations, minimum=1)
        mode = checks.choice("mode", mode, CONTENTION_MODES)
        timeout = checks.seconds("timeout", timeout)
        call_kwargs = dict(kwargs or {})
        if mode == "task":
            return _workers.run_tasks(
                target,
                tuple(args),
                call_kwargs,
                workers=workers,
                iterations=iterations,
                timeout=timeout,
            )
        if inspect.iscoroutinefunction(target):
            target = _workers.CoroutineRunner(target)  # each call in an event loop of its own
        if mode == "thread":
            return _workers.run_threads(
                target,
                tuple(args),
                call_kwargs,
                workers=workers,
                iterations=iterations,
                timeout=timeout,
                children=self._children,
            )
        return _workers.run_processes(
            self._context,
            target,
            tuple(args),
            call_kwargs,
            workers=workers,
            iterations=iterations,
            timeout=timeout,
            children=self._children,
        )

    # -- locks held elsewhere ------------------------------------------------------------

    def _manager(self, session: StateManager | str) -> StateManager:
        if isinstance(session, StateManager):
            return session
        if isinstance(session, str):
            return StateManager(session, settings=self._settings)
        raise TypeError(
            f"session must be a StateManager or a session id, not {type(session).__name__}"
        )

    @contextmanager
    def hold_lock(
        self, session: StateManager | str, *, timeout: float = 10.0
    ) -> Iterator[LockHolder]:
        """Have another process hold the session's lock for the ``with`` block.

        The block starts once the other process really holds the lock; on exit
        (also on exception) it releases the lock and is reaped.  Taking the lock
        of a session that does not exist creates its directory and lock file; if
        the session did not exist before the block and holds no file after it,
        it is removed again: ``hold_lock("never-made")`` leaves nothing behind.

        :param session: a :class:`~pytest_sessionstate.StateManager`, or a session id
            (resolved with :attr:`settings`).
        :param timeout: seconds the holder may wait for the lock, if someone else
            holds it.
        :raises SessionLockError: if the holder could not take the lock in time.
        :raises ValueError: if ``timeout`` is not a positive number.
        """
        manager = self._manager(session)
        timeout = checks.seconds("timeout", timeout)
        existed = os.path.lexists(manager.session_dir)
        try:
            process, conn = lockholder.start_holder(self._context, manager, timeout, self._children)
            try:
                yield LockHolder(
                    pid=process.pid or 0, session_id=manager.session_id, lock_file=manager.lock_file
                )
            finally:
                lockholder.stop_holder(process, conn, self._children, release=True)
        finally:
            if not existed:
                _remove_if_empty(manager)

    def stale_lock(self, session: StateManager | str, *, timeout: float = 10.0) -> KilledHolder:
        """Leave the session as a lock holder SIGKILLed inside the lock leaves it.

        A real process takes the session's lock (creating the session directory and
        lock file if needed) and is killed with SIGKILL while it holds it.  A correct
        lock is free the moment the holder is gone.

        :param session: a :class:`~pytest_sessionstate.StateManager`, or a session id.
        :param timeout: seconds the holder may wait for the lock first.
        :raises SessionLockError: if the holder could not take the lock in time.
        """
        manager = self._manager(session)
        timeout = checks.seconds("timeout", timeout)
        process, conn = lockholder.start_holder(self._context, manager, timeout, self._children)
        pid = process.pid or 0
        exitcode = lockholder.kill_holder(process, conn, self._children)
        return KilledHolder(
            pid=pid, exitcode=exitcode, session_id=manager.session_id, lock_file=manager.lock_file
        )

    # -- a race on demand ----------------------------------------------------------------

    def interleave(
        self,
        first: Callable[..., Any],
        second: Callable[..., Any],
        *,
        pause_at: ProbePoint = "read",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        timeout: float = 60.0,
    ) -> InterleaveResult:
        """Run ``first`` until it passes probe point ``pause_at``, then ``second`` to
        completion, then the rest of ``first``; both get ``args`` and ``kwargs``.

        Both run in threads of this process, paused and resumed by a probe
        listener, so the schedule is the same on every run.  If ``second`` is about
        to wait for a session lock that the paused ``first`` holds (the
        ``lock-waiting`` point), ``first`` is resumed there, so both finish:
        a consumer that locks around its read and write survives, and the result
        says so (its ``resumed`` is ``"lock-waiting"``).

        :param pause_at: a probe point name (see
            :data:`~pytest_sessionstate.probes.WRITE_POINTS`); ``first`` pauses the
            first time it passes it.
        :param timeout: bound on every wait; a call still running then is reported.
        :returns: both outcomes, in an
            :class:`~pytest_sessionstate.testing.contention.InterleaveResult`.
        :raises ValueError: for an unknown probe point or a bad timeout.
        """
        checks.callable_("first", first)
        checks.callable_("second", second)
        pause_at = check_probe_point(pause_at)
        timeout = checks.seconds("timeout", timeout)
        return _interleave.interleave(
            first,
            second,
            pause_at=pause_at,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            timeout=timeout,
            children=self._children,
        )

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """Kill and reap every process this simulator started that still runs; wait
        (bounded) for threads it could not stop.  Safe to call more than once."""
        self._children.close()

    def __enter__(self) -> ContentionSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ContentionSimulator({self._settings!r}, start_method={self.start_method!r})"
