"""The ``sessionstate`` marker and the ini options, through pytester runs."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_defaults_without_options(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_defaults(session_settings):
            assert session_settings.lock_timeout == 30.0
            assert session_settings.durable is True
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_ini_options_set_run_wide_defaults(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        sessionstate_lock_timeout = 2.5
        sessionstate_durable = false
        """
    )
    pytester.makepyfile(
        """
        from pytest_sessionstate import current_settings

        def test_fixture_settings(session_settings):
            assert (session_settings.lock_timeout, session_settings.durable) == (2.5, False)

        def test_factory_settings(session_root_factory):
            with session_root_factory() as active:
                assert (active.lock_timeout, active.durable) == (2.5, False)

        def test_make_session_uses_them(make_session):
            assert make_session().settings.durable is False
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_ini_override_from_the_command_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_it(session_settings):
            assert session_settings.lock_timeout == 0.0
        """
    )
    pytester.runpytest("-o", "sessionstate_lock_timeout=0").assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("sessionstate_lock_timeout = soon", "*sessionstate_lock_timeout must be a number*soon*"),
        ("sessionstate_lock_timeout = nan", "*sessionstate_lock_timeout must be a number*nan*"),
        ("sessionstate_durable = maybe", "*sessionstate_durable must be true or false*"),
    ],
)
def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester, line: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{line}\n")
    pytester.makepyfile("def test_never_runs(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_marker_adjusts_the_test_settings(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        sessionstate_lock_timeout = 9
        """
    )
    pytester.makepyfile(
        """
        import pytest

        pytestmark = pytest.mark.sessionstate(durable=False)

        def test_module_marker(session_settings):
            assert (session_settings.lock_timeout, session_settings.durable) == (9.0, False)

        @pytest.mark.sessionstate(lock_timeout=0.5)
        def test_function_and_module_markers_merge(session_settings):
            assert (session_settings.lock_timeout, session_settings.durable) == (0.5, False)

        @pytest.mark.sessionstate(lock_timeout=1)
        class TestClass:
            @pytest.mark.sessionstate(lock_timeout=-1, durable=True)
            def test_closest_wins(self, session_settings):
                assert (session_settings.lock_timeout, session_settings.durable) == (-1.0, True)

            def test_class_marker(self, session_settings):
                assert (session_settings.lock_timeout, session_settings.durable) == (1.0, False)

        @pytest.mark.sessionstate(lock_timeout=None)
        def test_none_keeps_the_default(session_settings):
            assert session_settings.lock_timeout == 9.0
        """
    )
    pytester.runpytest("--strict-markers").assert_outcomes(passed=5)


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.sessionstate(lock_timeout=None, durable=None):*"])


def test_bad_marker_arguments_fail_with_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.sessionstate(5)
        def test_positional(session_root): pass

        @pytest.mark.sessionstate(lock_timout=5)
        def test_misspelt(session_root): pass

        @pytest.mark.sessionstate(lock_timeout="5")
        def test_string_timeout(session_root): pass

        @pytest.mark.sessionstate(lock_timeout=float("nan"))
        def test_nan_timeout(session_root): pass

        @pytest.mark.sessionstate(durable="yes")
        def test_string_durable(session_root): pass

        @pytest.mark.sessionstate(durable=1)
        def test_no_fixture_still_checked(): pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=6)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.sessionstate: takes keyword arguments only (lock_timeout, durable)*",
            "*@pytest.mark.sessionstate: unknown argument 'lock_timout'; "
            "it takes lock_timeout, durable*",
            "*@pytest.mark.sessionstate: lock_timeout must be a number of seconds*'5'*",
            "*@pytest.mark.sessionstate: lock_timeout must be a number of seconds*nan*",
            "*@pytest.mark.sessionstate: durable must be True or False, not 'yes'*",
            "*@pytest.mark.sessionstate: durable must be True or False, not 1*",
        ]
    )
