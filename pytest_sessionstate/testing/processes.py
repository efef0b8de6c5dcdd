"""Child processes for the toolkit: the start method, a clean start, a sure end.

The contention simulator runs user code in other processes.  What a user
writes first is a lambda or a closure over a session id, and only ``fork``
can hand those to a child (``spawn`` pickles the target, and a lambda does
not pickle).  So ``fork`` is the default where the platform has it, ``spawn``
elsewhere (Windows, or on request), with a clear error for a target that
cannot be sent.

Python 3.12+ warns (``DeprecationWarning``) when a process that has threads
forks, because a lock held by another thread at that moment stays locked in
the child.  Under pytest there usually are threads (xdist's execnet, lock
waiters), and a suite with ``filterwarnings = error`` would turn the warning
into a failure.  We silence exactly that warning around our own starts, on
purpose: the child runs only our worker loop and the user's target, the
core's locks are reset in the child (``os.register_at_fork`` in
:mod:`pytest_sessionstate.locking` and :mod:`pytest_sessionstate.probes`),
and every child is bounded by a timeout, so a deadlock the warning is about
would surface as a reported timeout, never a hang.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import threading
import warnings
from collections.abc import Callable, Iterator
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

__all__ = [
    "START_METHODS",
    "Children",
    "check_picklable",
    "context_for",
    "default_start_method",
    "fork_warning_silenced",
    "kill_and_reap",
    "new_process",
    "start_process",
]

#: The start methods the toolkit supports (each only where the platform has it).
START_METHODS: tuple[str, ...] = ("fork", "spawn")

#: How long to wait for a killed child to be reaped.
REAP_TIMEOUT = 5.0

_FORK_WARNING = r"This process \(pid=\d+\) is multi-threaded, use of fork\(\)"


def default_start_method() -> str:
    """``"fork"`` where the platform has it (lambdas and closures work), else ``"spawn"``."""
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def available_start_methods() -> tuple[str, ...]:
    """The supported start methods this platform has."""
    present = multiprocessing.get_all_start_methods()
    return tuple(method for method in START_METHODS if method in present)


def context_for(start_method: str | None) -> BaseContext:
    """The multiprocessing context of ``start_method`` (None: :func:`default_start_method`).

    :raises ValueError: if the method is not one of the available :data:`START_METHODS`.
    """
    method = default_start_method() if start_method is None else start_method
    allowed = available_start_methods()
    if method not in allowed:
        raise ValueError(
            f"start_method must be one of {', '.join(map(repr, allowed))} on this platform "
            f"(or None for the default), not {start_method!r}"
        )
    return multiprocessing.get_context(method)


def check_picklable(what: str, value: object, start_method: str) -> None:
    """Fail early, and clearly, if ``value`` cannot be sent to a ``spawn`` child.

    :raises TypeError: naming ``what`` and the way out (``fork``, or threads, or a
        module-level function).
    """
    try:
        pickle.dumps(value)
    except Exception as exc:
        raise TypeError(
            f"{what} cannot be sent to a worker process started with {start_method!r}: "
            f"it does not pickle ({type(exc).__name__}: {exc}). Lambdas, closures and "
            "functions defined inside a test only work with the 'fork' start method. "
            "Use a module-level function (with its arguments in args=/kwargs=), "
            "or mode='thread'."
        ) from exc


def new_process(context: BaseContext, **options: Any) -> BaseProcess:
    """``context.Process(**options)`` (typeshed types the method per concrete context)."""
    process: BaseProcess = context.Process(**options)  # type: ignore[attr-defined]
    return process


@contextlib.contextmanager
def fork_warning_silenced() -> Iterator[None]:
    """Silence exactly the fork-with-threads warning for the block (see above)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FORK_WARNING, category=DeprecationWarning)
        yield


def start_process(process: BaseProcess) -> None:
    """Start ``process`` without letting the fork-with-threads warning escape (see above)."""
    with fork_warning_silenced():
        process.start()


def kill_and_reap(process: BaseProcess, timeout: float = REAP_TIMEOUT) -> None:
    """SIGKILL ``process`` if it still runs, and reap it (bounded by ``timeout``)."""
    if process.pid is None:  # never started
        return
    if process.exitcode is None:
        with contextlib.suppress(OSError, ValueError):
            process.kill()
    with contextlib.suppress(ValueError):
        process.join(timeout)


def close_quietly(*resources: Any) -> None:
    """Close connections (or anything with ``close()``), ignoring ones already closed."""
    for resource in resources:
        with contextlib.suppress(OSError, ValueError):
            resource.close()


class Children:
    """Everything a simulator started that may still run, so that ``close()`` can end it.

    Processes are killed and reaped; other things (a thread run that could not be
    stopped in time) register a ``stop`` callable.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: list[BaseProcess] = []
        self._stoppers: list[Callable[[], None]] = []

    def add(self, process: BaseProcess) -> None:
        """Track ``process`` until :meth:`discard` or :meth:`close`."""
        with self._lock:
            self._processes.append(process)

    def discard(self, process: BaseProcess) -> None:
        """Stop tracking ``process`` (it was reaped)."""
        with self._lock, contextlib.suppress(ValueError):
            self._processes.remove(process)

    def add_stopper(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` at :meth:`close`."""
        with self._lock:
            self._stoppers.append(stop)

    def close(self) -> None:
        """Kill and reap every tracked process; call every stopper."""
        with self._lock:
            processes, self._processes = self._processes, []
            stoppers, self._stoppers = self._stoppers, []
        for process in processes:
            kill_and_reap(process)
        for stop in stoppers:
            stop()
