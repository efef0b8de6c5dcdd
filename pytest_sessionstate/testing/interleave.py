"""A deterministic interleaving of two calls, steered through the probe points.

``first`` runs in a thread until it passes the probe point ``pause_at``; there a
probe listener blocks it.  ``second`` then runs, in another thread, to the end;
then ``first`` goes on.  A read-modify-write without a lock around it loses an
update every time under this schedule, not once a week.

A correct consumer holds the session lock across its read and write, so
``second`` cannot run to completion while ``first`` is paused inside the lock:
it would wait for ``first``, which waits for ``second``.  The listener sees
``second`` reach the ``lock-waiting`` point for a lock that ``first`` holds
(it tracks ``first``'s ``lock-acquired``/``lock-released`` points) and resumes
``first`` there, so both finish, one after the other, as the lock demands.

Every wait is bounded by ``timeout``; a call still running then is reported.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import probes
from ..clock import real_monotonic
from ..probes import ProbeEvent, ProbePoint
from . import checks, usercall
from .processes import Children
from .results import (
    CallOutcome,
    InterleaveResult,
    WorkerError,
    WorkerTimeoutError,
)

__all__ = ["PROBE_POINTS", "check_probe_point", "interleave"]

#: Every probe point name ``pause_at`` accepts (the core's list).
PROBE_POINTS = probes.PROBE_POINTS

#: Seconds :meth:`ContentionSimulator.close` waits for a call still running.
STOP_GRACE = 5.0


def check_probe_point(name: object, argument: str = "pause_at") -> ProbePoint:
    """Return ``name`` if it is a probe point.

    :raises ValueError: naming the allowed points.
    """
    return checks.choice(argument, name, PROBE_POINTS)


class _Call:
    """One of the two calls, in its own thread."""

    def __init__(
        self,
        index: int,
        function: Callable[..., Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        stopped: threading.Event,
    ) -> None:
        self.index = index
        self.stopped = stopped
        self.ident: int | None = None
        self.value: Any = None
        self.error: WorkerError | None = None
        self.finished = threading.Event()
        self.thread = threading.Thread(
            target=self._main,
            args=(function, args, kwargs),
            name=f"sessionstate-interleave-{'first' if index == 0 else 'second'}",
            daemon=True,
        )

    def _main(
        self, function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        self.ident = threading.get_ident()
        try:
            self.value = usercall.call(function, args, kwargs)
        except BaseException as exc:
            self.error = WorkerError.from_exception(self.index, 0, exc)
        finally:
            self.ident = None  # thread ids are recycled: never mistake a later thread for us
            self.finished.set()
            self.stopped.set()

    def outcome(self, timeout: float, *, started: bool) -> CallOutcome:
        if self.finished.is_set():
            return CallOutcome(self.value, self.error)
        name = "first" if self.index == 0 else "second"
        what = "is still running" if started else "was never started"
        return CallOutcome(
            None,
            WorkerError.of_runner(
                self.index, 0, WorkerTimeoutError, f"{name} {what} at the timeout ({timeout}s)"
            ),
        )


class _Schedule:
    """The probe listener that pauses ``first`` and resumes it at the right moment."""

    def __init__(
        self,
        first: _Call,
        second: _Call,
        pause_at: str,
        timeout: float,
        first_stopped: threading.Event,
    ) -> None:
        self.first = first
        self.second = second
        self.pause_at = pause_at
        self.timeout = timeout
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.first_stopped = first_stopped  # paused, or finished without pausing
        self.reason: str | None = None
        self._held_by_first: set[Path] = set()

    def __call__(self, event: ProbeEvent) -> None:
        me = threading.get_ident()
        if me == self.first.ident:
            if event.point == "lock-acquired":
                self._held_by_first.add(event.session_dir)
            elif event.point == "lock-released":
                self._held_by_first.discard(event.session_dir)
            if event.point == self.pause_at and not self.paused.is_set():
                self.paused.set()
                self.first_stopped.set()
                self.resume.wait(self.timeout)  # bounded; the orchestrator always sets it
        elif (
            me == self.second.ident
            and event.point == "lock-waiting"
            and self.paused.is_set()
            and not self.resume.is_set()
            and event.session_dir in self._held_by_first
        ):
            self.go_on("lock-waiting")

    def go_on(self, reason: str) -> None:
        """Resume ``first`` (once), remembering why."""
        if not self.resume.is_set():
            self.reason = reason
            self.resume.set()


def interleave(
    first: Callable[..., Any],
    second: Callable[..., Any],
    *,
    pause_at: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    timeout: float,
    children: Children,
) -> InterleaveResult:
    """Run ``first`` to ``pause_at``, ``second`` to the end, then the rest of ``first``.

    See the module docstring; arguments are checked by the caller.
    """
    first_stopped = threading.Event()
    one = _Call(0, first, args, kwargs, first_stopped)
    two = _Call(1, second, args, kwargs, threading.Event())
    schedule = _Schedule(one, two, pause_at, timeout, first_stopped)
    deadline = real_monotonic() + timeout

    def remaining() -> float:
        return max(deadline - real_monotonic(), 0.0)

    second_started = False
    probes.add_listener(schedule)
    try:
        one.thread.start()
        schedule.first_stopped.wait(remaining())
        if schedule.first_stopped.is_set():
            two.thread.start()
            second_started = True
            two.finished.wait(remaining())
            if not schedule.paused.is_set():
                schedule.go_on("not-paused")
            elif two.finished.is_set():
                schedule.go_on("after-second")
            else:
                schedule.go_on("timeout")
        schedule.go_on("timeout")
        # Once first is resumed, each call gets a fresh bound to finish.
        deadline = max(deadline, real_monotonic() + timeout)
        one.finished.wait(remaining())
        two.finished.wait(remaining())
    finally:
        schedule.go_on("timeout")
        probes.remove_listener(schedule)
        stragglers = [call.thread for call in (one, two) if call.thread.is_alive()]
        if stragglers:

            def wait_for_them() -> None:
                for thread in stragglers:
                    thread.join(STOP_GRACE)

            children.add_stopper(wait_for_them)
    return InterleaveResult(
        first=one.outcome(timeout, started=True),
        second=two.outcome(timeout, started=second_started),
        paused=schedule.paused.is_set(),
        resumed=schedule.reason or "timeout",
    )
