"""What the contention simulator hands back: results, the errors in them, and the
exceptions that stand for a worker that never finished.

Everything here is plain data, so a test can assert on it directly
(``sorted(result.returns) == list(range(1, 151))``, ``result.errors[0].exc_type``)
and a failing assertion prints something a person can read.
"""

from __future__ import annotations

import pickle
import traceback
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .usercall import HOP_MODULE

__all__ = [
    "CallOutcome",
    "ContentionError",
    "ContentionResult",
    "InterleaveResult",
    "WorkerDiedError",
    "WorkerError",
    "WorkerTimeoutError",
    "qualified_name",
]

#: How many errors :meth:`ContentionResult.raise_errors` spells out in full.
_ERRORS_SHOWN = 10


class WorkerTimeoutError(Exception):
    """Stands for a worker that was still running at the timeout (and was killed)."""


class WorkerDiedError(Exception):
    """Stands for a worker process that ended without finishing its calls
    (``os._exit``, a signal, a crash of the interpreter)."""


class ContentionError(AssertionError):
    """Raised by :meth:`ContentionResult.raise_errors` and
    :meth:`InterleaveResult.raise_errors`; ``errors`` holds every
    :class:`WorkerError`.  An ``AssertionError``, so pytest reports a failure."""

    def __init__(self, message: str, errors: list[WorkerError]) -> None:
        super().__init__(message)
        self.errors = errors


def qualified_name(cls: type) -> str:
    """``ZeroDivisionError`` for builtins, ``package.module.Name`` for the rest."""
    module = getattr(cls, "__module__", None)
    name = getattr(cls, "__qualname__", cls.__name__)
    if module in (None, "builtins"):
        return str(name)
    return f"{module}.{name}"


def safe_str(value: object) -> str:
    """``str(value)``, or a note saying why it could not be had."""
    try:
        return str(value)
    except Exception as exc:
        return f"<str() failed: {type(exc).__name__}>"


def format_traceback(exc: BaseException) -> str:
    """The traceback text of ``exc``, without the worker loop's own frames on top
    (the loop calling the target, and :mod:`~pytest_sessionstate.testing.usercall`'s
    neutral frames)."""
    tb = exc.__traceback__
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next  # the first frame is the simulator calling the target
    while tb is not None and tb.tb_next is not None and _is_call_frame(tb.tb_frame.f_globals):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _is_call_frame(frame_globals: dict[str, Any]) -> bool:
    name = frame_globals.get("__name__")
    return name in (HOP_MODULE, __package__ + ".usercall")


@dataclass(frozen=True)
class WorkerError:
    """One call that raised (or a worker that did not finish).

    :ivar worker: the worker's index, from 0 (in
        :meth:`~pytest_sessionstate.ContentionSimulator.interleave`, 0 is ``first`` and
        1 is ``second``).
    :ivar iteration: the call's index within the worker, from 0; None when the worker
        failed before its first call (it was never released, or it died starting).
    :ivar exc_type: the exception's class, qualified: ``"ZeroDivisionError"``,
        ``"pytest_sessionstate.errors.SessionLockError"``.
    :ivar message: ``str()`` of the exception.
    :ivar traceback: the formatted traceback, as the worker saw it.
    :ivar exception: the exception itself when it could be brought back to the test
        process (it pickles, or the worker was a thread); None otherwise.
    """

    worker: int
    iteration: int | None
    exc_type: str
    message: str
    traceback: str
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_exception(
        cls, worker: int, iteration: int | None, exc: BaseException, *, keep: bool = True
    ) -> WorkerError:
        """Describe ``exc``; keep the object itself only if ``keep``."""
        return cls(
            worker=worker,
            iteration=iteration,
            exc_type=qualified_name(type(exc)),
            message=safe_str(exc),
            traceback=format_traceback(exc),
            exception=exc if keep else None,
        )

    @classmethod
    def of_runner(
        cls, worker: int, iteration: int | None, kind: type[BaseException], message: str
    ) -> WorkerError:
        """A failure the runner saw, not one the target raised (a worker that died, or
        was still running at the timeout): no traceback, no exception object."""
        return cls(worker, iteration, qualified_name(kind), message, "")

    @classmethod
    def from_shipped(
        cls, worker: int, iteration: int | None, shipped: tuple[str, str, str, bytes | None]
    ) -> WorkerError:
        """Rebuild what ``ship_exception`` (in this module) sent from a child: the
        exception itself too, when it unpickles here."""
        exc_type, message, trace, blob = shipped
        return cls(worker, iteration, exc_type, message, trace, land_exception(blob))

    @property
    def where(self) -> str:
        """``"worker 2, iteration 7"``."""
        if self.iteration is None:
            return f"worker {self.worker}"
        return f"worker {self.worker}, iteration {self.iteration}"

    def describe(self) -> str:
        """A readable paragraph: where, what, and the traceback."""
        text = f"{self.where}: {self.exc_type}: {self.message}"
        if self.traceback:
            text += "\n" + self.traceback.rstrip()
        return text


def ship_exception(exc: BaseException) -> tuple[str, str, str, bytes | None]:
    """What a child process sends of an exception it caught: its type's qualified
    name, its message, its traceback, and the exception pickled (None if it does
    not pickle: then the three words describe it)."""
    try:
        blob: bytes | None = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
    except BaseException:
        blob = None
    return qualified_name(type(exc)), safe_str(exc), format_traceback(exc), blob


def land_exception(blob: bytes | None) -> BaseException | None:
    """The exception :func:`ship_exception` pickled, or None if there is none or it
    does not unpickle in this process (its class is not importable here...)."""
    if blob is None:
        return None
    try:
        value = pickle.loads(blob)
    except BaseException:
        return None
    return value if isinstance(value, BaseException) else None


def _group(errors: list[WorkerError]) -> list[list[WorkerError]]:
    """The errors grouped by what they say (type, message, traceback), in order of
    first appearance."""
    groups: dict[tuple[str, str, str], list[WorkerError]] = {}
    for error in errors:
        groups.setdefault((error.exc_type, error.message, error.traceback), []).append(error)
    return list(groups.values())


def _describe_group(group: list[WorkerError]) -> str:
    """One paragraph for errors that say the same thing: who, what, one traceback."""
    first = group[0]
    if len(group) == 1:
        return first.describe()
    workers = len({error.worker for error in group})
    if workers == len(group):
        who = f"{workers} workers"
    else:
        who = f"{len(group)} calls by {workers} worker{'' if workers == 1 else 's'}"
    places = "; ".join(error.where for error in group[:_ERRORS_SHOWN])
    if len(group) > _ERRORS_SHOWN:
        places += f"; ... and {len(group) - _ERRORS_SHOWN} more"
    text = f"{who} raised {first.exc_type}: {first.message}\n({places})"
    if first.traceback:
        text += "\n" + first.traceback.rstrip()
    return text


def _raise_for(errors: list[WorkerError], headline: str) -> None:
    __tracebackhide__ = True
    if not errors:
        return
    groups = _group(errors)
    parts = [headline]
    parts.extend(_describe_group(group) for group in groups[:_ERRORS_SHOWN])
    if len(groups) > _ERRORS_SHOWN:
        rest = sum(len(group) for group in groups[_ERRORS_SHOWN:])
        parts.append(f"... and {rest} more ({len(groups) - _ERRORS_SHOWN} other kinds)")
    cause = next((error.exception for error in errors if error.exception is not None), None)
    raise ContentionError("\n\n".join(parts), errors) from cause


#: The type of what the target of a run returns.
T = TypeVar("T")


@dataclass(frozen=True)
class ContentionResult(Generic[T]):
    """The outcome of :meth:`ContentionSimulator.run
    <pytest_sessionstate.ContentionSimulator.run>`.

    :ivar returns: every return value, worker by worker, in call order.
    :ivar errors: one :class:`WorkerError` per call that raised, per worker killed at
        the timeout, per worker that died.
    :ivar elapsed: seconds from the release of the workers until the last one finished
        (or was killed), on a real clock.
    :ivar lock_waits: seconds waited for each lock acquisition the workers made (taken
        at the ``lock-acquired`` probe point; re-entrant acquisitions wait for nothing
        and are not counted).
    :ivar workers: how many workers ran.
    :ivar iterations: how many calls each worker was to make.
    :ivar mode: ``"process"``, ``"thread"`` or ``"task"``.
    :ivar timed_out: the workers still running at the timeout.
    """

    returns: list[T]
    errors: list[WorkerError]
    elapsed: float
    lock_waits: list[float]
    workers: int
    iterations: int
    mode: str
    timed_out: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if every call of every worker returned."""
        return not self.errors

    def __repr__(self) -> str:
        # Short: pytest prints it in ``assert result.ok``; raise_errors() has the details.
        return (
            f"<ContentionResult mode={self.mode!r} workers={self.workers} "
            f"iterations={self.iterations} returns={len(self.returns)} "
            f"errors={len(self.errors)}>"
        )

    def raise_errors(self) -> None:
        """Do nothing if :attr:`ok`; else raise :class:`ContentionError` describing every
        error (type, message, traceback), chained to the first original exception.

        :raises ContentionError: if any call failed or any worker did not finish.
        """
        __tracebackhide__ = True
        calls = self.workers * self.iterations
        headline = f"{len(self.errors)} error(s) in {calls} call(s) by {self.workers} worker(s)"
        if self.timed_out:
            headline += f"; timed out: worker(s) {', '.join(map(str, self.timed_out))}"
        _raise_for(self.errors, headline + ":")

    def assert_ok(self) -> None:
        """The same as :meth:`raise_errors`, under the name :class:`CrashReport
        <pytest_sessionstate.CrashReport>` uses: both results answer both."""
        __tracebackhide__ = True
        self.raise_errors()


@dataclass(frozen=True)
class CallOutcome:
    """What one call of :meth:`~pytest_sessionstate.ContentionSimulator.interleave` gave.

    :ivar value: the return value (None if it raised).
    :ivar error: the :class:`WorkerError` if it raised or did not finish.
    """

    value: Any = None
    error: WorkerError | None = None

    @property
    def ok(self) -> bool:
        """True if the call returned."""
        return self.error is None


@dataclass(frozen=True)
class InterleaveResult:
    """The outcome of :meth:`ContentionSimulator.interleave
    <pytest_sessionstate.ContentionSimulator.interleave>`.

    :ivar first: the outcome of ``first``.
    :ivar second: the outcome of ``second``.
    :ivar paused: whether ``first`` reached ``pause_at`` (if not, the calls ran one
        after the other and there was no race to show: check ``pause_at``).
    :ivar resumed: why ``first`` went on: ``"after-second"`` (the plan: ``second``
        finished first), ``"lock-waiting"`` (``second`` was about to wait for a lock that
        the paused ``first`` held), ``"timeout"`` (``second`` did not finish in time), or
        ``"not-paused"``.
    """

    first: CallOutcome
    second: CallOutcome
    paused: bool
    resumed: str

    @property
    def ok(self) -> bool:
        """True if both calls returned."""
        return self.first.ok and self.second.ok

    @property
    def values(self) -> tuple[Any, Any]:
        """``(first's value, second's value)``.

        :raises ContentionError: if either call failed (see :meth:`raise_errors`).
        """
        __tracebackhide__ = True
        self.raise_errors()
        return self.first.value, self.second.value

    @property
    def errors(self) -> list[WorkerError]:
        """The errors of both calls (``worker`` 0 is ``first``, 1 is ``second``)."""
        return [o.error for o in (self.first, self.second) if o.error is not None]

    def raise_errors(self) -> None:
        """Do nothing if :attr:`ok`; else raise :class:`ContentionError`.

        :raises ContentionError: describing each failed call.
        """
        __tracebackhide__ = True
        _raise_for(self.errors, "interleave: a call failed (worker 0 is first, 1 is second):")

    def assert_ok(self) -> None:
        """The same as :meth:`raise_errors` (the name :class:`CrashReport
        <pytest_sessionstate.CrashReport>` uses)."""
        __tracebackhide__ = True
        self.raise_errors()
