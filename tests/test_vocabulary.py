"""Both halves of the toolkit use one vocabulary for their results.

A contention result and a crash report both answer ``ok``, ``assert_ok()`` and
``raise_errors()``; a run is ``run`` (and ``k``) on crashes, violations and target
errors; an exception's type name is ``exc_type`` on worker and target errors.
"""

from __future__ import annotations

import pytest

from pytest_sessionstate import ContentionSimulator, CrashInjector, StateManager
from pytest_sessionstate.testing import ContentionError, CrashReport, TargetError, Violation


def _fail() -> None:
    raise KeyError("boom")


def test_a_failed_contention_result_fails_under_both_names(contention: ContentionSimulator) -> None:
    result = contention.run(_fail, workers=1, mode="thread")

    assert not result.ok
    with pytest.raises(ContentionError, match="KeyError"):
        result.raise_errors()
    with pytest.raises(ContentionError, match="KeyError"):
        result.assert_ok()
    assert result.errors[0].exc_type == "KeyError"


def test_a_failed_interleaving_fails_under_both_names(contention: ContentionSimulator) -> None:
    outcome = contention.interleave(_fail, _fail)

    with pytest.raises(ContentionError):
        outcome.raise_errors()
    with pytest.raises(ContentionError):
        outcome.assert_ok()


def _write(session_id: str) -> None:
    StateManager(session_id).write_json("a.json", {"n": 1})


def test_a_crash_report_fails_under_both_names(crash: CrashInjector) -> None:
    def never_holds(snapshot: object) -> bool:
        return False

    report = crash.explore(_write, args=("s",), mode="error", check=never_holds)

    assert not report.ok
    with pytest.raises(AssertionError, match="violation"):
        report.assert_ok()
    with pytest.raises(AssertionError, match="violation"):
        report.raise_errors()
    first: Violation = report.violations[0]
    assert first.k == first.run
    assert [c.run for c in report.crashes] == [c.k for c in report.crashes]
    assert report.crashes[0].run == 1


def test_a_passing_report_passes_under_both_names(crash: CrashInjector) -> None:
    report: CrashReport = crash.explore(_write, args=("s",), mode="error")

    report.assert_ok()
    report.raise_errors()


def test_a_target_error_names_its_type_as_worker_errors_do() -> None:
    error = TargetError(run=3, hits=2, type="KeyError", message="'boom'")

    assert error.exc_type == error.type == "KeyError"
    assert error.run == 3
