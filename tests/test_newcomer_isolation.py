"""``sessionstate_isolation``: a test that forgets the fixture and the real root.

Each run is a subprocess with ``SESSIONSTATE_ROOT`` pointing at a directory the
test owns, so "the real root" is one we can look into (and never the user's).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

FORGETFUL = """
from pytest_sessionstate import StateManager, current_settings

def test_forgets_the_fixture():
    StateManager("cart").write_json("session.json", {"items": ["tea"]})
    print("ROOT", current_settings().root)
"""


@pytest.fixture
def real_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "real-root"
    monkeypatch.setenv("SESSIONSTATE_ROOT", str(root))
    return root


def _ini(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeini(f"[pytest]\nsessionstate_isolation = {mode}\n")


def test_by_default_a_test_without_the_fixture_writes_to_the_real_root(
    pytester: pytest.Pytester, real_root: Path
) -> None:
    pytester.makepyfile(FORGETFUL)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert (real_root / "cart" / "session.json").is_file()


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_fresh_gives_every_test_its_own_root(
    pytester: pytest.Pytester, real_root: Path, xdist: list[str]
) -> None:
    _ini(pytester, "fresh")
    pytester.makepyfile(
        FORGETFUL
        + """
def test_second_forgetful_test_starts_empty():
    from pytest_sessionstate import list_sessions
    assert list_sessions() == []
    StateManager("cart").write_json("session.json", {"items": []})

def test_asking_for_the_fixture_is_the_same_root(session_root):
    assert current_settings().root == session_root
"""
    )
    result = pytester.runpytest_subprocess("-s", *xdist)
    result.assert_outcomes(passed=3)
    assert not real_root.exists()


def test_fresh_shows_the_implicit_root_of_a_failing_test_that_wrote(
    pytester: pytest.Pytester, real_root: Path
) -> None:
    _ini(pytester, "fresh")
    pytester.makepyfile(
        """
        from pytest_sessionstate import StateManager

        def test_wrote_then_failed():
            StateManager("cart").write_json("session.json", {"items": ["tea"]})
            assert False

        def test_failed_without_writing():
            assert False, "nothing written"
        """
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*- sessionstate -*",
            "session_root (sessionstate_isolation = fresh): */sessions (1 session)",
            "    session 'cart' (1 file)",
        ]
    )
    # Only the test that wrote something gets the section.
    assert result.stdout.str().count("- sessionstate -") == 1


STRICT_TESTS = """
import threading
import pytest
from pytest_sessionstate import StateManager, list_sessions

def test_forgets_the_fixture():
    StateManager("cart").write_json("session.json", {"items": ["tea"]})

def test_lists_the_real_root():
    list_sessions()

def test_with_the_fixture(session_root):
    StateManager("cart").write_json("session.json", {"items": ["tea"]})

def test_with_make_session(make_session):
    make_session("cart")
    StateManager("cart").read_json  # the default settings are the test's

def test_factory_inside_the_block_only(session_root_factory):
    with session_root_factory():
        StateManager("cart").write_json("session.json", {})
    StateManager("cart")

def test_swallows_the_error():
    try:
        StateManager("cart")
    except BaseException:
        pass
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_strict_fails_a_test_that_reaches_the_real_root(
    pytester: pytest.Pytester, real_root: Path, xdist: list[str]
) -> None:
    _ini(pytester, "strict")
    pytester.makepyfile(STRICT_TESTS)
    result = pytester.runpytest_subprocess("-rf", *xdist)
    result.assert_outcomes(passed=2, failed=4)
    out = result.stdout.str()
    for name in (
        "test_forgets_the_fixture",
        "test_lists_the_real_root",
        "test_factory_inside_the_block_only",
        "test_swallows_the_error",
    ):
        assert f"FAILED test_strict_fails_a_test_that_reaches_the_real_root.py::{name}" in out
    result.stdout.fnmatch_lines(
        [f"*sessionstate_isolation = strict: this test reached the real session root {real_root}*"]
    )
    assert "Ask for the session_root fixture" in out
    assert "session_root_factory() as settings" in out
    assert "caught by the code under test" in out
    assert not real_root.exists()


def test_strict_error_points_at_the_users_line(pytester: pytest.Pytester, real_root: Path) -> None:
    _ini(pytester, "strict")
    pytester.makepyfile(FORGETFUL)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(['>*StateManager("cart").write_json*'])
    # The guard's own frame is hidden.
    assert "_RealRootGuard" not in result.stdout.str()


def test_strict_leaves_the_default_alone_outside_tests(
    pytester: pytest.Pytester, real_root: Path
) -> None:
    _ini(pytester, "strict")
    pytester.makeconftest(
        """
        from pytest_sessionstate import current_settings

        def pytest_sessionfinish(session):
            print("AFTER", current_settings().root)
        """
    )
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*AFTER {real_root}"])


@pytest.mark.parametrize("value", ["sometimes", "True", ""])
def test_a_bad_isolation_value_is_a_usage_error(pytester: pytest.Pytester, value: str) -> None:
    pytester.makeini(f"[pytest]\nsessionstate_isolation = {value}\n")
    pytester.makepyfile("def test_never_runs(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"*sessionstate_isolation must be one of none, fresh, strict, not {value!r}*"]
    )


def test_isolation_values_ignore_case_and_spaces(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nsessionstate_isolation =  Fresh \n")
    pytester.makepyfile(
        """
        from pytest_sessionstate import current_settings, settings

        def test_fresh():
            assert current_settings().root != settings.root
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)
