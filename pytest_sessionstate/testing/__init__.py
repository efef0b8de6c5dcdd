"""The testing toolkit: temporary roots, contention simulation, crash injection.

Every type a test may annotate with is importable from here
(``from pytest_sessionstate.testing import ContentionResult, CrashMode``). The
names are imported on first access (PEP 562), so that importing this package,
which the plugin does in every pytest run, costs nothing.

May import pytest; the core never imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..probes import ProbeEvent, ProbePoint, WritePoint
    from .contention import ContentionSimulator
    from .crash import CrashInjector, CrashMode, InjectedFault
    from .crashcheck import Check, Snapshot
    from .crashresults import Crash, CrashReport, TargetError, Violation
    from .filecrash import FileCrash, FileState, FileViolation
    from .lockholder import KilledHolder, LockHolder
    from .results import (
        CallOutcome,
        ContentionError,
        ContentionResult,
        InterleaveResult,
        WorkerDiedError,
        WorkerError,
        WorkerTimeoutError,
    )
    from .roots import MakeSession, SessionRootFactory
    from .workers import ContentionMode

__all__ = [
    "CallOutcome",
    "Check",
    "ContentionError",
    "ContentionMode",
    "ContentionResult",
    "ContentionSimulator",
    "Crash",
    "CrashInjector",
    "CrashMode",
    "CrashReport",
    "FileCrash",
    "FileState",
    "FileViolation",
    "InjectedFault",
    "InterleaveResult",
    "KilledHolder",
    "LockHolder",
    "MakeSession",
    "ProbeEvent",
    "ProbePoint",
    "SessionRootFactory",
    "Snapshot",
    "TargetError",
    "Violation",
    "WorkerDiedError",
    "WorkerError",
    "WorkerTimeoutError",
    "WritePoint",
]

_HOME = {
    "CallOutcome": "results",
    "Check": "crashcheck",
    "ContentionError": "results",
    "ContentionMode": "workers",
    "ContentionResult": "results",
    "ContentionSimulator": "contention",
    "Crash": "crashresults",
    "CrashInjector": "crash",
    "CrashMode": "crash",
    "CrashReport": "crashresults",
    "FileCrash": "filecrash",
    "FileState": "filecrash",
    "FileViolation": "filecrash",
    "InjectedFault": "crash",
    "InterleaveResult": "results",
    "KilledHolder": "lockholder",
    "LockHolder": "lockholder",
    "MakeSession": "roots",
    "ProbeEvent": "..probes",
    "ProbePoint": "..probes",
    "SessionRootFactory": "roots",
    "Snapshot": "crashcheck",
    "TargetError": "crashresults",
    "Violation": "crashresults",
    "WorkerDiedError": "results",
    "WorkerError": "results",
    "WorkerTimeoutError": "results",
    "WritePoint": "..probes",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(home if home.startswith("..") else "." + home, __name__)
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
