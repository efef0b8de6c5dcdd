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
    "pytest_sessionstate.settings",
    "pytest_sessionstate.dotpath",
    "pytest_sessionstate.codec",
    "pytest_sessionstate.probes",
    "pytest_sessionstate.fsops",
    "pytest_sessionstate.locking",
    "pytest_sessionstate.state",
    "pytest_sessionstate.clock",
]

NEVER_IN_THE_CORE = {"hypothesis", "freezegun", "time_machine", "filelock", "pytest", "_pytest"}
NEVER_IN_THE_PLUGIN = {"hypothesis", "freezegun", "time_machine"}


def imported_after(code):
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout.strip().splitlines()[-1])
    return {name.split(".")[0] for name in names}


def test_the_check_itself_sees_imports():
    assert "hypothesis" in imported_after("import hypothesis")


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_modules_import_nothing_heavy(module):
    assert not imported_after(f"import {module}") & NEVER_IN_THE_CORE


def test_public_names_import_nothing_heavy():
    code = (
        "from pytest_sessionstate import (StateManager, get_session_or_raise, list_sessions,"
        " Settings, settings, use_settings, SessionError, SessionLockError,"
        " SessionNotFoundError, SessionCorruptError, SessionValueError)"
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
