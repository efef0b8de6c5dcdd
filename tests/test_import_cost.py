"""Importing the core or the plugin stays cheap: no heavy or test-only imports.

Each check runs in a fresh interpreter, so what this test process has already
imported (pytest, hypothesis...) cannot hide an import.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CORE_MODULES = [
    "pytest_sessionstate",
    "pytest_sessionstate.errors",
    "pytest_sessionstate.names",
    "pytest_sessionstate.config",
    "pytest_sessionstate.dotpath",
    "pytest_sessionstate.codec",
    "pytest_sessionstate.probes",
    "pytest_sessionstate.fsops",
    "pytest_sessionstate.locking",
    "pytest_sessionstate.state",
    "pytest_sessionstate.clock",
    "pytest_sessionstate.lockcontext",
    "pytest_sessionstate.asyncstate",
]

#: The layers above the core: the core never imports them (checked by full module name,
#: so a core module importing ``pytest_sessionstate.testing`` cannot hide behind the
#: package's own name).  asyncio is the async layer's, never the sync core's.
ABOVE_THE_CORE = (
    "pytest_sessionstate.testing",
    "pytest_sessionstate.plugin",
    "pytest_sessionstate.strategies",
    "pytest_sessionstate.stateful",
)

NEVER_IN_THE_CORE = {"hypothesis", "freezegun", "time_machine", "filelock", "pytest", "_pytest"}
NEVER_IN_THE_PLUGIN = {"hypothesis", "freezegun", "time_machine"}


def modules_after(code):
    """The full names of the modules a fresh interpreter has imported after ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def imported_after(code):
    """The top-level packages imported after ``code``."""
    return {name.split(".")[0] for name in modules_after(code)}


def layers_above_the_core(names):
    return sorted(name for name in names if name.startswith(ABOVE_THE_CORE))


def test_the_layer_check_itself_sees_imports():
    names = modules_after("import pytest_sessionstate.testing.crash")
    assert "pytest_sessionstate.testing.crash" in layers_above_the_core(names)


def test_the_check_itself_sees_imports():
    assert "hypothesis" in imported_after("import hypothesis")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_modules_import_nothing_heavy(module):
    names = modules_after(f"import {module}")
    assert not {name.split(".")[0] for name in names} & NEVER_IN_THE_CORE
    assert layers_above_the_core(names) == []


@pytest.mark.parametrize(
    "module", [m for m in CORE_MODULES if m != "pytest_sessionstate.asyncstate"]
)
def test_the_sync_core_does_not_import_asyncio(module):
    # asyncio costs ~50 ms: production code that never uses AsyncStateManager pays nothing.
    assert "asyncio" not in imported_after(f"import {module}")


def test_public_names_import_nothing_heavy():
    code = (
        "from pytest_sessionstate import (StateManager, get_session_or_raise, list_sessions,"
        " Settings, settings, use_settings, SessionError, SessionLockError,"
        " SessionNotFoundError, SessionCorruptError, SessionValueError, SessionTypeError)"
    )
    assert not imported_after(code) & NEVER_IN_THE_CORE


def test_using_the_core_imports_no_test_library(tmp_path):
    code = (
        "from pytest_sessionstate import Settings, StateManager\n"
        f"m = StateManager('s', settings=Settings({str(tmp_path)!r}))\n"
        "m.write_json('a.json', {'v': 1})\n"
        "m.update_json('a.json', {'w.x': 2})\n"
        "with m.transaction('a.json') as d:\n"
        "    d['z'] = 3\n"
    )
    # filelock serves the lock, imported on first use; test libraries never are.
    assert not imported_after(code) & (NEVER_IN_THE_CORE - {"filelock"})


def test_the_plugin_imports_neither_hypothesis_nor_freezegun():
    assert not imported_after("import pytest_sessionstate.plugin") & NEVER_IN_THE_PLUGIN
