"""Another process that holds a session's lock: for as long as a block runs
(``hold_lock``), or until it is SIGKILLed inside the lock (``stale_lock``).

The holder is a real process taking the real lock through
:meth:`StateManager.lock <pytest_sessionstate.StateManager.lock>`, so what the
code under test meets is exactly what it would meet in production: a lock that
is busy, or a lock file left by a holder that died.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from multiprocessing import connection
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from ..clock import real_monotonic
from ..config import Settings
from ..errors import SessionLockError
from ..state import StateManager
from .processes import Children, close_quietly, kill_and_reap, new_process, start_process
from .results import land_exception, ship_exception

__all__ = ["KilledHolder", "LockHolder", "start_holder", "stop_holder"]

#: Seconds allowed for the holder process to start, on top of the lock timeout.
STARTUP_ALLOWANCE = 10.0


@dataclass(frozen=True)
class LockHolder:
    """The process holding the lock inside :meth:`ContentionSimulator.hold_lock
    <pytest_sessionstate.ContentionSimulator.hold_lock>`.

    :ivar pid: its process id.
    :ivar session_id: the session whose lock it holds.
    :ivar lock_file: the lock file.
    """

    pid: int
    session_id: str
    lock_file: Path


@dataclass(frozen=True)
class KilledHolder:
    """What :meth:`ContentionSimulator.stale_lock
    <pytest_sessionstate.ContentionSimulator.stale_lock>` did.

    :ivar pid: the process that held the lock.
    :ivar exitcode: its exit code as :mod:`multiprocessing` reports it
        (``-signal.SIGKILL`` where there are signals).
    :ivar session_id: the session.
    :ivar lock_file: the lock file it left behind.
    """

    pid: int
    exitcode: int | None
    session_id: str
    lock_file: Path


def _holder_main(conn: Connection, session_id: str, settings: Settings, timeout: float) -> None:
    """The holder process: take the lock, say so, keep it until told (or orphaned)."""
    try:
        manager = StateManager(session_id, settings=settings)
        with manager.lock(timeout=timeout):
            conn.send(("held", os.getpid()))
            with contextlib.suppress(EOFError):
                conn.recv()  # "release", or end of file if the test process is gone
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("error", *ship_exception(exc)))
    finally:
        conn.close()


def start_holder(
    context: BaseContext,
    manager: StateManager,
    timeout: float,
    children: Children,
) -> tuple[BaseProcess, Connection]:
    """Start a holder of ``manager``'s lock; return once it really holds it.

    :raises SessionLockError: if it could not take the lock within ``timeout`` (the
        error the holder got), or did not report within ``timeout`` plus a start-up
        allowance.
    """
    ours, theirs = context.Pipe(duplex=True)
    process = new_process(
        context,
        target=_holder_main,
        args=(theirs, manager.session_id, manager.settings, timeout),
        name=f"sessionstate-lock-holder-{manager.session_id}",
        daemon=True,
    )
    children.add(process)
    try:
        try:
            start_process(process)
        finally:
            theirs.close()
        message = _wait_for_message(ours, process, real_monotonic() + timeout + STARTUP_ALLOWANCE)
        if message is None:
            raise SessionLockError(
                f"the lock holder of session {manager.session_id!r} did not report holding "
                f"the lock within {timeout}s (exit code {process.exitcode})",
                details={"session_id": manager.session_id, "timeout": timeout},
            )
        if message[0] == "error":
            _, exc_type, text, trace, blob = message
            original = land_exception(blob)
            if original is not None:
                raise original
            raise SessionLockError(
                f"the lock holder of session {manager.session_id!r} failed: "
                f"{exc_type}: {text}\n{trace}",
                details={"session_id": manager.session_id, "timeout": timeout},
            )
    except BaseException:
        stop_holder(process, ours, children, release=False)
        raise
    return process, ours


def _wait_for_message(conn: Connection, process: BaseProcess, deadline: float) -> Any:
    while True:
        remaining = deadline - real_monotonic()
        if remaining <= 0:
            return None
        ready = connection.wait([conn, process.sentinel], remaining)
        if conn in ready:
            try:
                return conn.recv()
            except EOFError:
                return None
        if ready:  # exited without a word
            return None


def stop_holder(
    process: BaseProcess, conn: Connection, children: Children, *, release: bool
) -> None:
    """End the holder: ask it to release (``release``) and reap it, else SIGKILL it."""
    try:
        if release and process.exitcode is None:
            with contextlib.suppress(OSError):  # it may be gone already
                conn.send("release")
            process.join(STARTUP_ALLOWANCE)
    finally:
        kill_and_reap(process)
        close_quietly(conn)
        children.discard(process)


def kill_holder(process: BaseProcess, conn: Connection, children: Children) -> int | None:
    """SIGKILL the holder while it holds the lock; reap it; return its exit code."""
    try:
        if process.pid is not None:
            os.kill(process.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        process.join(STARTUP_ALLOWANCE)
        return process.exitcode
    finally:
        stop_holder(process, conn, children, release=False)
