"""The plugin's fixtures, exercised the way users meet them: pytester runs of test files."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_session_root_is_fresh_empty_and_the_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pathlib import Path
        from pytest_sessionstate import (
            Settings, StateManager, current_settings, list_sessions, settings,
        )

        seen = []

        def test_first(session_root):
            assert isinstance(session_root, Path)
            assert session_root.is_dir() and list(session_root.iterdir()) == []
            assert current_settings().root == session_root
            StateManager("abc").write_json("a.json", {"x": 1})  # no settings= given
            assert (session_root / "abc" / "a.json").is_file()
            seen.append(session_root)

        def test_second_gets_another_empty_root(session_root):
            assert session_root not in seen
            assert list_sessions() == []

        def test_settings_are_the_ones_in_force(session_settings, session_root):
            assert isinstance(session_settings, Settings)
            assert session_settings.root == session_root
            assert current_settings() is session_settings

        def test_default_restored_between_tests():
            assert current_settings() is settings
        """
    )
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=4)


def test_default_settings_restored_after_a_failing_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_sessionstate import current_settings, settings

        def test_fails_while_root_is_active(session_root):
            assert current_settings().root == session_root
            raise RuntimeError("boom")

        def test_fails_in_setup_of_another_fixture(session_root, broken):
            pass

        def test_restored():
            assert current_settings() is settings
        """,
        conftest="""
        import pytest

        @pytest.fixture
        def broken():
            raise RuntimeError("fixture broke")
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1, errors=1)


def test_make_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from pytest_sessionstate import (
            MakeSession, SessionValueError, Settings, StateManager, list_sessions,
        )

        def test_unique_ids_and_existing_sessions(make_session: MakeSession, session_root):
            assert isinstance(make_session, MakeSession)  # the exported type
            first, second = make_session(), make_session()
            assert isinstance(first, StateManager)
            assert first.session_id != second.session_id
            assert first.exists() and second.exists()
            assert first.list_files() == []
            assert list_sessions() == sorted([first.session_id, second.session_id])
            assert first.session_dir.parent == session_root
            assert make_session.sessions == [first, second]

        def test_files_are_the_initial_documents(make_session):
            manager = make_session("cart", {"a.json": {"items": [1, 2]}, "b.json": {}})
            assert manager.session_id == "cart"
            assert manager.list_files() == ["a.json", "b.json"]
            assert manager.read_json("a.json") == {"items": [1, 2]}
            assert StateManager("cart").read_json("b.json") == {}

        def test_bad_input_writes_nothing(make_session, session_root):
            with pytest.raises(SessionValueError):
                make_session("../escape")
            with pytest.raises(SessionValueError, match="bad"):
                make_session("s", {"ok.json": {"a": 1}, "x.json": {"bad": {1, 2}}})
            with pytest.raises(SessionValueError):
                make_session("s", {".hidden": {}})
            with pytest.raises(TypeError):
                make_session("s", {"a.json": [1]})
            assert list(session_root.iterdir()) == []

        def test_settings_elsewhere(make_session, tmp_path):
            other = Settings(tmp_path / "elsewhere")
            manager = make_session(files={"a.json": {"k": "v"}}, settings=other)
            assert manager.session_dir.parent == other.root
            assert manager.read_json("a.json") == {"k": "v"}
        """
    )
    pytester.runpytest().assert_outcomes(passed=4)


def test_session_root_factory_in_given_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from hypothesis import given, settings, strategies as st
        from pytest_sessionstate import (
            SessionRootFactory, StateManager, current_settings, list_sessions,
        )

        seen = []

        @settings(max_examples=25, database=None)
        @given(st.integers(0, 10**9), st.integers(0, 4))
        def test_fresh_root_per_example(session_root_factory: SessionRootFactory, value, n):
            assert isinstance(session_root_factory, SessionRootFactory)
            with session_root_factory() as active:
                assert current_settings() is active
                assert active.root.is_dir() and list(active.root.iterdir()) == []
                assert active.root not in seen
                seen.append(active.root)
                for i in range(n):
                    StateManager(f"s{i}").write_json("v.json", {"v": value})
                assert list_sessions() == [f"s{i}" for i in range(n)]
            assert current_settings() is not active

        def test_examples_got_distinct_roots_and_old_ones_were_removed():
            assert len(seen) >= 10
            assert len(set(seen)) == len(seen)
            # Finished roots are removed when the next one is made: the last survives.
            assert [root.exists() for root in seen].count(True) == 1

        @pytest.mark.sessionstate(durable=False, lock_timeout=4)
        @settings(max_examples=3, database=None)
        @given(st.none())
        def test_marker_and_overrides_apply(session_root_factory, _):
            with session_root_factory() as active:
                assert (active.durable, active.lock_timeout) == (False, 4.0)
            with session_root_factory(lock_timeout=0) as active:
                assert (active.durable, active.lock_timeout) == (False, 0.0)

        def test_nested_roots_stay_until_their_block_ends(session_root_factory):
            with session_root_factory() as outer, session_root_factory() as inner:
                assert outer.root != inner.root
                assert current_settings() is inner
                assert outer.root.is_dir()
            with session_root_factory():
                assert not outer.root.exists() and not inner.root.exists()

        @settings(max_examples=3, database=None)
        @given(st.none())
        def test_function_scoped_root_is_rejected_by_hypothesis(session_root, _):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*function_scoped_fixture*"])
    assert "test_function_scoped_root_is_rejected_by_hypothesis" in result.stdout.str()


def test_shared_session_root_without_xdist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_sessionstate import Settings, StateManager, current_settings, settings

        roots = []

        def test_one(shared_session_root):
            roots.append(shared_session_root)
            assert shared_session_root.is_dir()
            assert "sessionstate-shared-" in shared_session_root.name
            StateManager("left", settings=Settings(shared_session_root)).write_json(
                "a.json", {"by": "test_one"}
            )
            assert current_settings() is settings  # not made the default

        def test_two_sees_the_same_directory(shared_session_root, session_root):
            assert roots == [shared_session_root]
            assert shared_session_root != session_root.parent
            manager = StateManager("left", settings=Settings(shared_session_root))
            assert manager.read_json("a.json") == {"by": "test_one"}

        def test_it_lives_in_basetemp(shared_session_root, tmp_path_factory):
            assert shared_session_root.parent == tmp_path_factory.getbasetemp()
        """
    )
    pytester.runpytest("-p", "no:randomly", "-p", "no:xdist").assert_outcomes(passed=3)


def test_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fixtures")
    out = result.stdout.str()
    expected = {
        "session_root": "fresh, empty directory",
        "session_settings": "in force for the test",
        "make_session": "make_session(session_id=None, files=None)",
        "session_root_factory": "with session_root_factory() as settings:",
        "shared_session_root": "shared by every test of the run",
        "contention": "ContentionSimulator",
        "crash": "CrashInjector",
    }
    for name, phrase in expected.items():
        assert f"{name} " in out or f"{name}\n" in out, name
        assert phrase in out, (name, phrase)
    assert result.ret == 0
