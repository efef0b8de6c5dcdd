"""The ``sessionstate`` section of a failing test's report."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_sessionstate.testing import report
from pytest_sessionstate.testing.report import MAX_FILE_CHARS, MAX_FILES, MAX_SESSIONS, render

pytest_plugins = ["pytester"]

SECTION = "*- sessionstate -*"


def test_failing_test_shows_sessions_files_and_contents(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_sessionstate import StateManager

        def test_fails(make_session):
            make_session("cart", {"session.json": {"items": ["apple"], "paid": False}})
            StateManager("profile").write_json("user.json", {"name": "ada"})
            assert False, "checkout went wrong"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            SECTION,
            "session_root: */sessions (2 sessions)",
            "    session 'cart' (1 file)",
            "      session.json (* bytes):",
            '          "items": [',
            '            "apple"',
            '          "paid": false',
            "    session 'profile' (1 file)",
            "      user.json (* bytes):",
            '          "name": "ada"',
            "*short test summary info*",
        ]
    )


def test_contents_are_cut_past_the_documented_size(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        def test_fails(make_session):
            make_session("big", {{"big.json": {{"blob": "x" * {MAX_FILE_CHARS * 3}}}}})
            assert False
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            SECTION,
            f"      big.json (* bytes), first {MAX_FILE_CHARS} characters:",
            "        [[]... * more characters[]]",
        ]
    )
    assert "x" * (MAX_FILE_CHARS + 1) not in result.stdout.str()


def test_no_section_for_passing_xfailing_or_fixture_free_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_passes(make_session):
            make_session("kept", {"a.json": {"x": 1}})

        @pytest.mark.xfail(strict=True)
        def test_xfails(make_session):
            make_session("kept", {"a.json": {"x": 1}})
            assert False

        def test_fails_without_the_fixtures(tmp_path):
            assert False
        """
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=1, xfailed=1, failed=1)
    out = result.stdout.str()
    assert "- sessionstate -" not in out
    assert "kept" not in out


def test_section_for_setup_and_teardown_failures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken_after(make_session):
            make_session("during-teardown", {"t.json": {"phase": "teardown"}})
            yield
            raise RuntimeError("teardown broke")

        def test_teardown_fails(broken_after):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([SECTION, "    session 'during-teardown' (1 file)"])


def test_section_shows_the_failing_hypothesis_example_root(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from hypothesis import given, settings, strategies as st
        from pytest_sessionstate import StateManager

        @settings(max_examples=50, database=None)
        @given(st.integers(0, 100))
        def test_fails_for_big_numbers(session_root_factory, n):
            with session_root_factory():
                StateManager("counter").write_json("n.json", {"n": n})
                assert n < 10
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            SECTION,
            "session_root_factory: */root-* (1 session)",
            "    session 'counter' (1 file)",
            '          "n": 10',  # the shrunk, failing example is the one shown
        ]
    )


def test_section_lists_the_shared_root(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_sessionstate import Settings, StateManager

        def test_fails(shared_session_root):
            manager = StateManager("shared", settings=Settings(shared_session_root))
            manager.write_json("s.json", {"who": "everyone"})
            assert False
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [SECTION, "shared_session_root: */sessionstate-shared-* (1 session)", '*"who": "everyone"'],
    )


# -- render() directly: what it says about odd things on disk ------------------------


def test_render_describes_a_missing_root_and_an_empty_one(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    text = render([(tmp_path / "gone", "session_root"), (tmp_path / "empty", "make_session")])
    assert f"session_root: {tmp_path / 'gone'} (does not exist)" in text
    assert f"make_session: {tmp_path / 'empty'} (no sessions)" in text


def test_render_shows_corrupt_files_as_they_are(tmp_path: Path) -> None:
    session = tmp_path / "s"
    session.mkdir()
    (session / "bad.json").write_bytes(b'{"a": NaN, \xff}')
    (session / ".lock").write_bytes(b"")
    (session / ".bad.json.0123456789abcdef.tmp").write_bytes(b"{")
    text = render([(tmp_path, "session_root")])
    assert '{"a": NaN, \ufffd}' in text
    assert "session 's' (1 file)" in text
    assert ".lock" not in text
    assert "leftover temp files: .bad.json.0123456789abcdef.tmp" in text


def test_render_bounds_the_number_of_sessions_and_files(tmp_path: Path) -> None:
    for i in range(MAX_SESSIONS + 3):
        (tmp_path / f"s{i:03}").mkdir()
    crowded = tmp_path / "s000"
    for i in range(MAX_FILES + 2):
        (crowded / f"f{i:03}.json").write_text("{}\n")
    text = render([(tmp_path, "session_root")])
    assert f"({MAX_SESSIONS + 3} sessions)" in text
    assert "[... 3 more sessions]" in text
    assert "[... 2 more files]" in text
    assert f"session 's{MAX_SESSIONS:03}'" not in text


def test_section_name_and_limits_are_documented() -> None:
    assert report.SECTION_NAME == "sessionstate"
    docs = Path(__file__).parent.parent / "docs" / "fixtures.rst"
    text = docs.read_text(encoding="utf-8")
    for limit in (MAX_FILE_CHARS, MAX_SESSIONS, MAX_FILES):
        assert f"{limit:,}" in text or str(limit) in text
