"""How the plugin is loaded, what loading it costs in imports, and freezegun."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

USES_FIXTURES = """
from pytest_sessionstate import StateManager

def test_uses_fixtures(session_root, make_session):
    make_session("s", {"a.json": {"x": 1}})
    assert StateManager("s").read_json("a.json") == {"x": 1}
"""


def test_explicit_plugin_with_autoload_disabled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(USES_FIXTURES)
    result = pytester.runpytest_subprocess("-p", "pytest_sessionstate.plugin", timeout=120)
    result.assert_outcomes(passed=1)
    # The control: without -p, nothing loads the plugin and the fixtures are unknown.
    result = pytester.runpytest_subprocess(timeout=120)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'session_root' not found*"])


def test_plugin_can_be_disabled_by_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        USES_FIXTURES
        + """

def test_unrelated():
    assert True
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:sessionstate", timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'session_root' not found*"])


def test_importing_the_plugin_imports_neither_hypothesis_nor_freezegun() -> None:
    code = (
        "import sys, pytest_sessionstate.plugin\n"
        "heavy = ('hypothesis', 'freezegun', 'pytest_sessionstate.testing.roots',\n"
        "         'pytest_sessionstate.testing.report')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_run_that_never_imports_freezegun_leaves_it_unimported(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_no_freezegun(session_root, make_session, session_root_factory):
            make_session()
            with session_root_factory():
                pass
            assert "freezegun" not in sys.modules
        """
    )
    result = pytester.runpytest_subprocess(timeout=120)
    result.assert_outcomes(passed=1)


def test_freeze_time_cannot_stop_the_clocks(pytester: pytest.Pytester) -> None:
    pytest.importorskip("freezegun")
    pytester.makepyfile(
        """
        import threading
        import time

        import freezegun
        import pytest
        from freezegun import freeze_time
        from pytest_sessionstate import SessionLockError

        @freeze_time("2020-01-01")
        def test_contended_lock_times_out_while_time_is_frozen(make_session):
            manager = make_session()
            held, release = threading.Event(), threading.Event()

            def holder():
                with manager.lock():
                    held.set()
                    release.wait(10)

            thread = threading.Thread(target=holder)
            thread.start()
            try:
                assert held.wait(10)
                assert time.monotonic() == time.monotonic()  # frozen indeed
                with pytest.raises(SessionLockError), manager.lock(timeout=0.2):
                    pass
            finally:
                release.set()
                thread.join(10)
            assert not thread.is_alive()

        def test_the_package_is_on_freezegun_ignore_list():
            assert "pytest_sessionstate" in freezegun.config.settings.default_ignore_list
            assert "pytest_sessionstate" in freeze_time("2020-01-01").ignore

        def test_toolkit_modules_see_real_time(session_root_factory):
            import pytest_sessionstate.testing.roots as roots

            # Code in the package's modules reads the real clock under freeze_time.
            probe = compile("import time\\nnow = time.time()", roots.__file__, "exec")
            with freeze_time("2001-01-01"):
                namespace = {"__name__": "pytest_sessionstate.testing.roots"}
                exec(probe, namespace)
                user = time.time()
            assert user < 1e9 < namespace["now"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", timeout=120)
    result.assert_outcomes(passed=3)
