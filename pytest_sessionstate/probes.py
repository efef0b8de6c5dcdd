"""Probe points: the named steps of the write protocol that tests can act on.

The state manager passes a probe point right after each step of a write has
happened.  A listener (the crash injector, the contention simulator, a user's
own) can then fail the operation, kill the process, pause the thread, or just
record what happened.  With no listener installed, passing a point costs one
truth test of a module attribute.

This module is part of the core: it imports nothing from pytest or Hypothesis.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

__all__ = [
    "EXTRA_POINTS",
    "PROBE_POINTS",
    "WRITE_POINTS",
    "ProbePoint",
    "WritePoint",
    "ProbeEvent",
    "Listener",
    "listen",
]

#: The name of a probe point of the write protocol (the type of :data:`WRITE_POINTS`).
WritePoint = Literal[
    "lock-acquired",
    "read",
    "temp-created",
    "temp-written",
    "temp-synced",
    "replaced",
    "dir-synced",
    "lock-released",
]

#: The probe points of one write, in the order they are passed.  ``temp-synced``
#: and ``dir-synced`` are passed only when the settings are durable.
WRITE_POINTS: tuple[WritePoint, ...] = get_args(WritePoint)

#: Points passed outside the write protocol: ``removed`` after ``delete`` unlinks a
#: file, ``lock-waiting`` when an acquisition is about to wait for another holder,
#: ``dir-created`` when a session directory was created.
EXTRA_POINTS: tuple[str, ...] = ("removed", "lock-waiting", "dir-created")

#: The name of any probe point: a point of the write protocol or one of :data:`EXTRA_POINTS`
#: (what ``fail_at`` and ``interleave(pause_at=...)`` accept).
ProbePoint = Literal[WritePoint, "removed", "lock-waiting", "dir-created"]

#: Every probe point: :data:`WRITE_POINTS`, then :data:`EXTRA_POINTS`.
PROBE_POINTS: tuple[ProbePoint, ...] = get_args(ProbePoint)


@dataclass(frozen=True)
class ProbeEvent:
    """One pass through a probe point.

    :ivar point: the point's name (see :data:`WRITE_POINTS`).
    :ivar session_dir: the session's directory.
    :ivar filename: the file being read or written; None for lock points.
    :ivar temp: the temp file (temp-* points and ``replaced``).
    :ivar data: the bytes written (``temp-written`` only).
    :ivar waited: seconds spent waiting for the lock (``lock-acquired`` only).
    :ivar durable: whether the write is durable.
    """

    point: str
    session_dir: Path
    filename: str | None = None
    temp: Path | None = None
    data: bytes | None = None
    waited: float | None = None
    durable: bool = True

    @property
    def path(self) -> Path | None:
        """The target file's path, when the event concerns a file."""
        return None if self.filename is None else self.session_dir / self.filename


#: A listener is called with each event; it may raise (the operation then fails
#: with that exception), block, or end the process.
Listener = Callable[[ProbeEvent], None]

#: The installed listeners.  Read without a lock on the hot path: replaced whole,
#: never mutated in place.
listeners: tuple[Listener, ...] = ()
_listeners_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # Another thread may have held the lock at fork: it never releases it in the child.
    global _listeners_lock
    _listeners_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch
    os.register_at_fork(after_in_child=_after_fork_in_child)


def emit(event: ProbeEvent) -> None:
    """Pass ``event`` to every listener.  Callers check :data:`listeners` first."""
    for listener in listeners:
        listener(event)


def add_listener(listener: Listener) -> None:
    """Install ``listener`` until :func:`remove_listener`."""
    global listeners
    with _listeners_lock:
        listeners = (*listeners, listener)


def remove_listener(listener: Listener) -> None:
    """Uninstall ``listener``; a listener that is not installed is ignored."""
    global listeners
    with _listeners_lock:
        remaining = list(listeners)
        if listener in remaining:
            remaining.remove(listener)
        listeners = tuple(remaining)


@contextmanager
def listen(listener: Listener) -> Iterator[Listener]:
    """Install ``listener`` for the block (in every thread of this process)."""
    add_listener(listener)
    try:
        yield listener
    finally:
        remove_listener(listener)
