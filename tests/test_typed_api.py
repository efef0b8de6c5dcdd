"""The public API as a mypy --strict user sees it.

``typed/user_code.py`` calls every public function and method, and annotates
with every fixture and result type, the way a typed downstream project does;
it must type-check under ``mypy --strict``. The mistakes the types exist to
catch (a misspelt mode or probe point, a wrong return type) must not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_sessionstate

HERE = Path(__file__).parent
#: Where ``import pytest_sessionstate`` resolves: mypy cannot follow the import
#: hook of an editable install, so it is told where the package is.
PACKAGE_PARENT = Path(pytest_sessionstate.__file__).resolve().parent.parent


def run_mypy(path: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(PACKAGE_PARENT)}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--hide-error-context",
            "--cache-dir",
            str(cache),
            str(path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=path.parent,
        timeout=280,
        check=False,
    )


def test_a_strict_user_of_every_public_call_type_checks(tmp_path: Path) -> None:
    result = run_mypy(HERE / "typed" / "user_code.py", tmp_path / "cache")

    assert result.returncode == 0, result.stdout + result.stderr


MISTAKES = {
    "a misspelt contention mode": (
        "from pytest_sessionstate import ContentionSimulator\n"
        "def f(c: ContentionSimulator) -> None:\n"
        "    c.run(print, mode='proces')\n",
        "Literal['process', 'thread', 'task']",
    ),
    "a misspelt crash mode": (
        "from pytest_sessionstate import CrashInjector\n"
        "def f(c: CrashInjector) -> None:\n"
        "    c.explore(print, mode='power_loss')\n",
        '"explore"',
    ),
    "a misspelt probe point": (
        "from pytest_sessionstate import CrashInjector\n"
        "def f(c: CrashInjector) -> None:\n"
        "    with c.fail_at('renamed'):\n"
        "        pass\n",
        '"fail_at"',
    ),
    "a pause point that does not exist": (
        "from pytest_sessionstate import ContentionSimulator\n"
        "def f(c: ContentionSimulator) -> None:\n"
        "    c.interleave(print, print, pause_at='reading')\n",
        '"interleave"',
    ),
    "the returns of a run taken for another type": (
        "from pytest_sessionstate import ContentionSimulator\n"
        "def n() -> int:\n"
        "    return 1\n"
        "def f(c: ContentionSimulator) -> list[str]:\n"
        "    return c.run(n).returns\n",
        "list[int]",
    ),
    "what a coroutine target returns taken for another type": (
        "from pytest_sessionstate import ContentionSimulator\n"
        "async def n() -> int:\n"
        "    return 1\n"
        "def f(c: ContentionSimulator) -> list[str]:\n"
        "    return c.run(n, mode='task').returns\n",
        "list[int]",
    ),
    "a non-JSON-object document": (
        "from pytest_sessionstate import StateManager\n"
        "StateManager('s').write_json('a.json', [1, 2])\n",
        '"write_json"',
    ),
}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_mypy_catches(mistake: str, tmp_path: Path) -> None:
    source, expected = MISTAKES[mistake]
    path = tmp_path / "mistake.py"
    path.write_text(source)

    result = run_mypy(path, tmp_path / "cache")

    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stdout, result.stdout


def test_every_type_a_test_annotates_with_is_exported_from_testing() -> None:
    code = (
        "import sys, pytest_sessionstate.testing as t\n"
        "assert 'pytest_sessionstate.testing.crash' not in sys.modules, 'not lazy'\n"
        "names = ['ContentionResult', 'ContentionError', 'WorkerError', 'InterleaveResult',\n"
        "         'InjectedFault', 'Crash', 'Violation', 'TargetError', 'CrashReport',\n"
        "         'Snapshot', 'Check', 'ContentionMode', 'CrashMode', 'ProbePoint',\n"
        "         'LockHolder', 'KilledHolder', 'MakeSession', 'SessionRootFactory']\n"
        "missing = [n for n in names if n not in t.__all__]\n"
        "assert not missing, missing\n"
        "for name in t.__all__:\n"
        "    getattr(t, name)\n"
        "print(sorted(set(dir(t)) & set(t.__all__)) == sorted(t.__all__))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
