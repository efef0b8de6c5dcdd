"""pytest-sessionstate: session state in JSON files that survives crashes, contention
and bad input, and the pytest toolkit that proves it.

The core (this package's top-level names) needs no pytest: production code
uses :class:`StateManager` directly.  The testing toolkit's classes are
exported here too, but imported only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Settings, current_settings, settings, use_settings
from .errors import (
    SessionCorruptError,
    SessionError,
    SessionLockError,
    SessionNotFoundError,
    SessionTypeError,
    SessionValueError,
)
from .jsontypes import JSONObject, Updates
from .state import StateManager, get_session_or_raise, list_sessions

if TYPE_CHECKING:
    from .asyncstate import AsyncStateManager
    from .testing.contention import ContentionResult, ContentionSimulator
    from .testing.crash import CrashInjector, CrashReport
    from .testing.roots import MakeSession, SessionRootFactory

__version__ = "0.1.0"

__all__ = [
    "AsyncStateManager",
    "ContentionResult",
    "ContentionSimulator",
    "CrashInjector",
    "CrashReport",
    "JSONObject",
    "MakeSession",
    "SessionCorruptError",
    "SessionError",
    "SessionLockError",
    "SessionNotFoundError",
    "SessionRootFactory",
    "SessionTypeError",
    "SessionValueError",
    "Settings",
    "StateManager",
    "Updates",
    "__version__",
    "current_settings",
    "get_session_or_raise",
    "list_sessions",
    "settings",
    "use_settings",
]

# The toolkit's classes, imported on first access (PEP 562) to keep
# ``import pytest_sessionstate`` cheap for production code and for every pytest run.
_LAZY = {
    "AsyncStateManager": "pytest_sessionstate.asyncstate",  # asyncio costs ~50 ms to import
    "ContentionResult": "pytest_sessionstate.testing.contention",
    "ContentionSimulator": "pytest_sessionstate.testing.contention",
    "CrashInjector": "pytest_sessionstate.testing.crash",
    "CrashReport": "pytest_sessionstate.testing.crash",
    "MakeSession": "pytest_sessionstate.testing.roots",
    "SessionRootFactory": "pytest_sessionstate.testing.roots",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pytest_sessionstate' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
