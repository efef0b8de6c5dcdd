"""One run of a crash exploration: record the probe log, crash at the k-th hit.

Two ways to run a target and stop it at its k-th probe hit:

* :func:`run_forked`: in a forked child that SIGKILLs itself right after the
  hit (no ``finally``, no ``atexit``: a real crash).  The child sends every
  probe event to the parent through a pipe the moment it happens, so the
  parent holds the complete log of the operations that reached the kernel.
* :func:`run_in_process`: in this process; the operation at the hit fails with
  ``OSError(EIO)``.

A *hit* is a pass through one of :data:`COUNTED_POINTS` (the write protocol's
points and ``removed``); ``lock-waiting`` and ``dir-created`` are recorded but
not counted (the first depends on timing, the second is a side effect of
taking a lock).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import probes
from ..clock import real_monotonic
from ..config import Settings, use_settings
from ..probes import WRITE_POINTS, ProbeEvent
from . import rawchild, usercall

__all__ = [
    "COUNTED_POINTS",
    "Recorder",
    "RunOutcome",
    "injected_error",
    "run_forked",
    "run_in_process",
]

#: The points that count as probe hits.
COUNTED_POINTS: frozenset[str] = frozenset((*WRITE_POINTS, "removed"))

#: Exit status of a child whose target raised, or which failed to report.
_EXIT_RAISED = 3
_EXIT_BROKEN = 70


def injected_error(code: int, event: ProbeEvent) -> OSError:
    """The ``OSError`` an injected fault raises: its errno, the point, the file."""
    message = f"{os.strerror(code)} [injected at probe point {event.point!r}]"
    where = event.path if event.path is not None else event.session_dir
    return OSError(code, message, str(where))


class Recorder:
    """A probe listener that logs every event and acts at the k-th counted hit.

    :param crash_at: the hit to act at (1-based); None never acts.
    :param on_hit: called with the event of that hit, after it was logged; it may
        raise (the operation fails) or end the process.
    :param sink: called with every event as it is logged (the child's pipe).
    """

    def __init__(
        self,
        crash_at: int | None,
        on_hit: Callable[[ProbeEvent], None] | None = None,
        sink: Callable[[ProbeEvent], None] | None = None,
    ) -> None:
        self.crash_at = crash_at
        self.events: list[ProbeEvent] = []
        self.hits = 0
        self.crash_event: ProbeEvent | None = None
        self._on_hit = on_hit
        self._sink = sink
        self._lock = threading.Lock()

    def __call__(self, event: ProbeEvent) -> None:
        with self._lock:
            self.events.append(event)
            if self._sink is not None:
                self._sink(event)
            if event.point not in COUNTED_POINTS:
                return
            self.hits += 1
            fire = self.hits == self.crash_at
            if fire:
                self.crash_event = event
        if fire and self._on_hit is not None:
            self._on_hit(event)


@dataclass
class RunOutcome:
    """What one run did.

    :ivar status: ``"crashed"`` (stopped at the hit), ``"returned"`` (completed
        untouched), ``"raised"`` (the target raised on its own, no fault injected),
        ``"hung"`` (killed at the run's timeout) or ``"died"`` (the child ended
        some other way).
    :ivar events: the probe log, in order.
    :ivar hits: the number of counted hits.
    :ivar crash_event: the event of the hit the run crashed at.
    :ivar error: for ``raised``: (exception type, message, traceback text);
        for ``died``/``hung``: a description.
    """

    status: str
    events: list[ProbeEvent]
    hits: int
    crash_event: ProbeEvent | None = None
    error: tuple[str, str, str] | None = None


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return (
        cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    )


def describe_exception(exc: BaseException) -> tuple[str, str, str]:
    """(type name, message, traceback text) of ``exc``."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return _type_name(exc), str(exc), text


def _count(events: Sequence[ProbeEvent], k: int) -> tuple[int, ProbeEvent | None]:
    hits, at = 0, None
    for event in events:
        if event.point in COUNTED_POINTS:
            hits += 1
            if hits == k:
                at = event
    return hits, at


def run_in_process(
    target: Callable[..., object],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    settings: Settings,
    fault_at: int | None,
) -> RunOutcome:
    """Run ``target`` here; the operation at hit ``fault_at`` raises ``OSError(EIO)``.

    An exception that follows the fault (the fault itself, or what the target
    made of it) is the crash's consequence; one raised with no fault injected
    is the target's own.
    """

    def on_hit(event: ProbeEvent) -> None:
        raise injected_error(errno.EIO, event)

    recorder = Recorder(fault_at, on_hit)
    error: tuple[str, str, str] | None = None
    try:
        with use_settings(settings), probes.listen(recorder):
            usercall.call(target, args, kwargs)
    except Exception as exc:
        if recorder.crash_event is None:
            error = describe_exception(exc)
    if recorder.crash_event is not None:
        status = "crashed"
    else:
        status = "returned" if error is None else "raised"
    return RunOutcome(status, recorder.events, recorder.hits, recorder.crash_event, error)


def _pack(event: ProbeEvent) -> tuple[Any, ...]:
    return (
        event.point,
        os.fspath(event.session_dir),
        event.filename,
        None if event.temp is None else os.fspath(event.temp),
        event.data,
        event.waited,
        event.durable,
    )


def _unpack(record: tuple[Any, ...]) -> ProbeEvent:
    point, session_dir, filename, temp, data, waited, durable = record
    return ProbeEvent(
        point,
        Path(session_dir),
        filename,
        None if temp is None else Path(temp),
        data,
        waited,
        durable,
    )


def _child(
    write_fd: int,
    target: Callable[..., object],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    settings: Settings,
    crash_at: int,
) -> None:  # pragma: no cover - runs in the forked child (its outcome is tested)
    def send(record: tuple[Any, ...]) -> None:
        rawchild.write_all(write_fd, rawchild.frame(record))

    def sink(event: ProbeEvent) -> None:
        send(("event", _pack(event)))

    def on_hit(event: ProbeEvent) -> None:
        os.kill(os.getpid(), signal.SIGKILL)  # no finally, no atexit: a crash
        os._exit(_EXIT_BROKEN)  # not reached

    recorder = Recorder(crash_at, on_hit, sink)
    # Assigned without the module's lock: after fork another thread may have held it.
    probes.listeners = (*probes.listeners, recorder)
    status = 0
    try:
        with use_settings(settings):
            usercall.call(target, args, kwargs)
    except BaseException as exc:
        status = _EXIT_RAISED
        try:
            send(("raised", *describe_exception(exc)))
        except BaseException:
            status = _EXIT_BROKEN
    else:
        send(("returned",))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def _read_until_eof(read_fd: int, pid: int, deadline: float) -> tuple[bytes, bool]:
    """Everything the child writes; (data, timed_out).  Kills the child at the deadline."""
    chunks: list[bytes] = []
    timed_out = False
    while True:
        remaining = deadline - real_monotonic()
        if remaining <= 0 and not timed_out:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait = max(remaining, 0.0) if not timed_out else 5.0
        ready, _, _ = select.select([read_fd], [], [], wait)
        if not ready:
            if timed_out:  # a grandchild keeps the pipe open: give up on it
                break
            continue
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks), timed_out


def run_forked(
    target: Callable[..., object],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    settings: Settings,
    crash_at: int,
    timeout: float,
) -> RunOutcome:
    """Run ``target`` in a forked child that SIGKILLs itself right after hit ``crash_at``.

    :param timeout: seconds the child may run; then it is killed and the run is
        ``"hung"``.
    """
    read_fd, write_fd = os.pipe()
    try:
        pid = rawchild.fork()
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_fd)
            _child(write_fd, target, args, kwargs, settings=settings, crash_at=crash_at)
        finally:
            os._exit(_EXIT_BROKEN)
    os.close(write_fd)
    try:
        data, timed_out = _read_until_eof(read_fd, pid, real_monotonic() + timeout)
    finally:
        os.close(read_fd)
    status = rawchild.reap(pid, real_monotonic() + 5.0)
    events: list[ProbeEvent] = []
    ending: tuple[Any, ...] | None = None
    for record in rawchild.FrameReader().feed(data):
        if record[0] == "event":
            events.append(_unpack(record[1]))
        else:
            ending = record
    hits, at = _count(events, crash_at)
    if timed_out:
        message = f"the target did not finish within {timeout:g} s; it was killed"
        return RunOutcome("hung", events, hits, error=("timeout", message, ""))
    if ending is not None and ending[0] == "returned":
        return RunOutcome("returned", events, hits)
    if ending is not None and ending[0] == "raised":
        return RunOutcome("raised", events, hits, error=(ending[1], ending[2], ending[3]))
    if status is None:  # pragma: no cover - a SIGKILLed child that never ended
        message = "the child process running the target could not be reaped"
        return RunOutcome("died", events, hits, error=("died", message, ""))
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if killed and at is not None and hits == crash_at:
        return RunOutcome("crashed", events, hits, at)
    if os.WIFSIGNALED(status):
        how = f"was killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    else:
        how = f"exited with status {os.WEXITSTATUS(status)}"
    message = f"the child process running the target {how} before its hit {crash_at}"
    return RunOutcome("died", events, hits, error=("died", message, ""))
