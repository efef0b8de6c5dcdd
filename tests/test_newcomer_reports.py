"""The ``sessionstate`` section: @given tests, failed explorations, state machines,
and the hint on Hypothesis's health check."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SECTION = "*- sessionstate -*"


def test_given_section_shows_the_current_root_and_counts_the_earlier_ones(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from hypothesis import given, settings, strategies as st
        from pytest_sessionstate import StateManager

        @settings(max_examples=200, database=None, deadline=None)
        @given(st.integers(min_value=0, max_value=1000))
        def test_given(session_root_factory, n):
            with session_root_factory():
                StateManager("cart").write_json("session.json", {"n": n})
                assert n < 500
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    section = out[out.index("- sessionstate -") :]
    result.stdout.fnmatch_lines(
        [
            SECTION,
            "session_root_factory: */root-* (1 session)",
            "    session 'cart' (1 file)",
            '          "n": 500',
            "session_root_factory: * earlier roots not shown (removed when the next one was made)",
        ]
    )
    assert section.count("session_root_factory: /") == 1
    assert "does not exist" not in section


def test_failed_explore_shows_the_state_that_violated_the_check(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from pytest_sessionstate import StateManager

        def checkout():
            manager = StateManager("shop")
            manager.update_json("order.json", {"paid": True})
            manager.write_json("cart.json", {"items": []})

        def paid_means_empty(snapshot):
            files = snapshot["shop"]
            assert not (files["order.json"]["paid"] and files["cart.json"]["items"])

        def test_checkout(crash, make_session):
            make_session("shop", {"order.json": {"paid": False}, "cart.json": {"items": ["tea"]}})
            crash.explore(checkout, check=paid_means_empty).assert_ok()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    start = out.index("- sessionstate -")
    end = out.find("\n=", start)  # the section ends where pytest's next block begins
    section = out[start : end if end >= 0 else len(out)]
    result.stdout.fnmatch_lines(
        [
            SECTION,
            "session_root: */sessions (1 session)",
            "crash.explore (mode 'kill', * runs, * violations): the state of the first "
            "violation (the root itself was restored after the exploration)",
            "run *, crashed right after 'replaced' (order.json, session 'shop'), "
            "state: after SIGKILL",
            "    session 'shop' (2 files that parsed)",
            "      cart.json:",
            '            "tea"',
            "      order.json:",
            '          "paid": true',
        ]
    )
    # The root block shows the restored state, the crash block the violating one.
    assert section.count('"paid": false') == 1
    assert section.count('"paid": true') == 1


def test_no_crash_block_when_the_exploration_was_clean(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_sessionstate import StateManager

        def test_clean(crash, make_session):
            make_session("s", {"a.json": {"n": 0}})
            crash.explore(lambda: StateManager("s").update_json("a.json", {"n": 1})).assert_ok()
            assert False, "later"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert "crash.explore (mode" not in result.stdout.str()


def test_state_machine_failure_gets_the_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from hypothesis import Phase, settings
        from hypothesis.stateful import precondition, rule
        from pytest_sessionstate.stateful import SessionStateMachine

        @settings(max_examples=50, stateful_step_count=10, deadline=None, database=None,
                  phases=[Phase.generate, Phase.shrink])
        class Broken(SessionStateMachine):
            filenames = ("cart.json",)

            @precondition(lambda self: "cart.json" in self.model)
            @rule()
            def checkout(self):
                assert False, "checkout broke"

        TestBroken = Broken.TestCase
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            SECTION,
            "SessionStateMachine: the last of * runs, as its teardown found it (then removed)",
            "SessionStateMachine: */sessionstate-machine-* (1 session)",
            "    session 'machine' (1 file)",
            "      cart.json (* bytes):",
        ]
    )


def test_a_passing_state_machine_gets_no_section(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from hypothesis import settings
        from pytest_sessionstate.stateful import SessionStateMachine

        @settings(max_examples=3, stateful_step_count=3, deadline=None, database=None)
        class Fine(SessionStateMachine):
            pass

        TestFine = Fine.TestCase

        def test_other_fails():
            assert False
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    assert "- sessionstate -" not in result.stdout.str()


@pytest.mark.parametrize("fixture", ["session_root", "make_session", "contention"])
def test_health_check_on_our_fixtures_points_to_the_factory(
    pytester: pytest.Pytester, fixture: str
) -> None:
    pytester.makepyfile(
        f"""
        from hypothesis import given, strategies as st

        @given(st.integers())
        def test_given({fixture}, n):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*FailedHealthCheck*",
            f"*pytest-sessionstate: '{fixture}' is function-scoped, so every example of a "
            "@given test would share one session root. Ask for the session-scoped "
            "session_root_factory fixture instead*",
        ]
    )


def test_health_check_on_other_fixtures_gets_no_hint(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from hypothesis import given, strategies as st

        @given(st.integers())
        def test_given(tmp_path, n):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert "pytest-sessionstate:" not in result.stdout.str()
