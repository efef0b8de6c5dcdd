"""Failure output a person can read: no library frames, grouped worker errors,
short reprs, and a check's bare ``assert`` kept inside its paragraph."""

from __future__ import annotations

import re

import pytest

from pytest_sessionstate import CrashInjector, StateManager

pytest_plugins = ["pytester"]


def test_raise_errors_groups_identical_errors_and_hides_its_frames(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def refuse():
            raise ValueError("the shop is closed")

        def test_contention(contention):
            result = contention.run(refuse, workers=4, mode="thread")
            result.raise_errors()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "E *4 error(s) in 4 call(s) by 4 worker(s):",
            "E *4 workers raised ValueError: the shop is closed",
            "E *(worker 0, iteration 0; worker 1, iteration 0; worker 2, iteration 0; "
            "worker 3, iteration 0)",
        ]
    )
    # The traceback of the workers' error is printed once, not once per worker (the
    # source line shows up once or twice besides, depending on the Python version).
    assert out.count('raise ValueError("the shop is closed")') < 4
    # No frame of the library's own code in the failure.
    assert "results.py" not in out
    assert "def raise_errors" not in out


def test_errors_of_several_iterations_say_calls_and_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def refuse():
            raise KeyError("cart")

        def test_contention(contention):
            contention.run(refuse, workers=2, iterations=3, mode="thread").raise_errors()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *6 calls by 2 workers raised KeyError: 'cart'"])


def test_different_errors_stay_apart(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading

        def refuse(seen=[], lock=threading.Lock()):
            with lock:
                seen.append(1)
                n = len(seen)
            raise ValueError("odd") if n % 2 else KeyError("even")

        def test_contention(contention):
            contention.run(refuse, workers=4, mode="thread").raise_errors()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *2 workers raised ValueError: odd"])
    result.stdout.fnmatch_lines(["E *2 workers raised KeyError: 'even'"])


def test_process_workers_group_too(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def refuse():
            raise ValueError("closed")

        def test_contention(contention):
            contention.run(refuse, workers=3).raise_errors()
        """
    )
    result = pytester.runpytest("-n", "2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E *3 workers raised ValueError: closed"])


def test_assert_ok_shows_the_summary_not_the_library(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_sessionstate import StateManager

        def never(snapshot):
            return False

        def bump():
            StateManager("s").update_json("a.json", {"n": 1})

        def test_crash(crash, make_session):
            make_session("s", files={"a.json": {"n": 0}})
            crash.explore(bump, check=never, mode="error").assert_ok()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(["E *crash exploration (mode 'error'): * runs, * probe hits"])
    assert "def assert_ok" not in out
    assert "crash.py" not in out


def test_reports_have_short_reprs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def refuse():
            raise ValueError("closed")

        def test_plain_assert(contention):
            assert contention.run(refuse, workers=2, mode="thread").ok
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*<ContentionResult mode='thread' workers=2 iterations=1 returns=0 errors=2>.ok*"]
    )


def test_crash_report_repr_is_short(crash: CrashInjector, make_session) -> None:
    make_session("s", files={"a.json": {"n": 0}})
    report = crash.explore(lambda: StateManager("s").update_json("a.json", {"n": 1}), mode="error")
    assert repr(report) == (
        f"<CrashReport mode='error' runs={report.runs} crashes={len(report.crashes)} "
        "violations=0 errors=0>"
    )


def test_a_bare_assert_in_a_check_keeps_the_summary_indented(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from pytest_sessionstate import StateManager

        def check(snapshot):
            assert len(snapshot["s"]["a.json"]) == 5

        def bump():
            StateManager("s").update_json("a.json", {"n": 1})

        def test_crash(crash, make_session):
            make_session("s", files={"a.json": {"n": 0}})
            crash.explore(bump, check=check, mode="error").assert_ok()
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "found check(snapshot) failed" in line)
    # pytest's rewritten message spans lines: each stays inside the paragraph.
    assert "AssertionError: assert 1 == 5" in lines[start]
    assert re.match(r"E {12,}\+  where 1 = len\(", lines[start + 1]), lines[start + 1]
    assert "expected check(snapshot) to hold" in "\n".join(lines[start : start + 4])


def test_a_bare_assert_without_rewriting_names_the_line(crash: CrashInjector, make_session):
    make_session("s", files={"a.json": {"n": 0}})
    namespace: dict[str, object] = {}
    # Compiled here, so pytest's assertion rewriting does not give it a message.
    exec(
        compile("def check(snapshot):\n    assert not snapshot\n", "shop_checks.py", "exec"),
        namespace,
    )
    report = crash.explore(
        lambda: StateManager("s").update_json("a.json", {"n": 1}),
        check=namespace["check"],  # type: ignore[arg-type]
        mode="error",
    )
    assert not report.ok
    found = report.violations[0].found
    assert found == "check(snapshot) failed: AssertionError: at shop_checks.py:2"
