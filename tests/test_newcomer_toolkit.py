"""SessionStateMachine.filenames and rule weighting, hold_lock leaving nothing,
freeze_time seen by the toolkit's workers, and explore(all_or_nothing=True)."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import pytest
from freezegun import freeze_time
from hypothesis import settings
from hypothesis.stateful import rule, run_state_machine_as_test

from pytest_sessionstate import (
    ContentionSimulator,
    CrashInjector,
    SessionValueError,
    StateManager,
)
from pytest_sessionstate.stateful import FILENAMES, SessionStateMachine

pytestmark = pytest.mark.timeout(120)

# -- SessionStateMachine.filenames ---------------------------------------------------


def test_filenames_default_to_the_module_constant() -> None:
    assert SessionStateMachine.filenames == FILENAMES


def test_the_base_rules_use_a_subclass_filenames() -> None:
    seen: set[str] = set()

    class Shop(SessionStateMachine):
        filenames = ("cart.json", "orders.json")

        def teardown(self) -> None:
            seen.update(self.model)
            super().teardown()

    run_state_machine_as_test(
        Shop, settings=settings(max_examples=30, stateful_step_count=10, deadline=None)
    )
    assert seen, "no file was ever written"
    assert seen <= {"cart.json", "orders.json"}


def test_a_rule_bound_under_more_names_is_drawn_more_and_none_drops_one() -> None:
    calls = []

    class Weighted(SessionStateMachine):
        @rule()
        def app_rule(self) -> None:
            calls.append(1)

        app_rule_again = app_rule
        app_rule_once_more = app_rule
        # Base rules a subclass does not need can be dropped.
        read_elsewhere = None
        update_through_a_value = None

    # Hypothesis draws among these entries with equal chances.
    names = [r.function.__name__ for r in Weighted.setup_state().rules]
    assert names.count("app_rule") == 3
    assert "read_elsewhere" not in names
    assert "update_through_a_value" not in names
    run_state_machine_as_test(
        Weighted, settings=settings(max_examples=20, stateful_step_count=10, deadline=None)
    )
    assert calls  # 3 entries in 12, 200 steps: never drawn is out of reach


@pytest.mark.parametrize("bad", [(), "cart.json", ("../up",), ("ok.json", ".hidden")])
def test_bad_filenames_are_refused(bad: object) -> None:
    class Bad(SessionStateMachine):
        filenames = bad  # type: ignore[assignment]

    with pytest.raises((TypeError, SessionValueError)):
        Bad()


def test_the_docstring_and_the_docs_agree_on_settings() -> None:
    # Words only: Python 3.13 dedents docstrings, earlier versions keep the indentation.
    doc = " ".join((SessionStateMachine.__doc__ or "").split())
    assert "deadline=None" in doc
    assert "Do not assign to ``SessionStateMachine.TestCase.settings``" in doc
    rst = (Path(__file__).parent.parent / "docs" / "strategies.rst").read_text()
    assert "deadline=None" in rst
    assert "TestCase.settings" in rst


# -- hold_lock -----------------------------------------------------------------------


def test_hold_lock_of_a_new_session_leaves_nothing(
    contention: ContentionSimulator, session_root: Path
) -> None:
    with contention.hold_lock("never-made") as holder:
        assert holder.lock_file.exists()
    assert os.listdir(session_root) == []


def test_hold_lock_keeps_a_session_that_existed(
    contention: ContentionSimulator, make_session
) -> None:
    session = make_session("empty-but-made")
    with contention.hold_lock(session):
        pass
    assert session.exists()


def test_hold_lock_keeps_what_was_written_after_it(
    contention: ContentionSimulator, session_root: Path
) -> None:
    manager = StateManager("made-during")
    with contention.hold_lock(manager):
        pass
    # A write between the release and the cleanup is what the lock protects.
    manager.write_json("a.json", {"n": 1})
    with contention.hold_lock(manager):
        pass
    assert manager.read_json("a.json") == {"n": 1}


def test_hold_lock_leaves_nothing_also_when_the_block_raises(
    contention: ContentionSimulator, session_root: Path
) -> None:
    with pytest.raises(RuntimeError), contention.hold_lock("never-made"):
        raise RuntimeError
    assert os.listdir(session_root) == []


# -- freeze_time in the workers ------------------------------------------------------


def _clocks() -> tuple[int, int, float]:
    return (time.gmtime().tm_year, datetime.datetime.now().year, time.time())


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_workers_see_the_frozen_clock(contention: ContentionSimulator, mode: str) -> None:
    with freeze_time("2001-02-03 04:05:06"):
        expected = _clocks()
        result = contention.run(_clocks, workers=2, mode=mode, timeout=60)
    result.raise_errors()
    assert result.returns == [expected, expected]
    assert expected[0] == 2001


def test_interleaved_calls_see_the_frozen_clock(contention: ContentionSimulator) -> None:
    with freeze_time("2001-02-03"):
        outcome = contention.interleave(_clocks, _clocks)
    first, second = outcome.values
    assert first[0] == second[0] == 2001


@pytest.mark.parametrize("mode", ["error", "kill"])
def test_explored_targets_see_the_frozen_clock(crash: CrashInjector, mode: str) -> None:
    def stamp() -> None:
        StateManager("s").write_json("a.json", {"year": time.gmtime().tm_year})

    def frozen_year(snapshot: dict[str, dict[str, dict[str, int]]]) -> None:
        for files in snapshot.values():
            if "a.json" in files:
                assert files["a.json"]["year"] == 2001

    with freeze_time("2001-02-03"):
        report = crash.explore(stamp, mode=mode, check=frozen_year)
    report.assert_ok()


def test_worker_tracebacks_hide_the_call_frames(contention: ContentionSimulator) -> None:
    def refuse() -> None:
        raise ValueError("closed")

    with freeze_time("2001-02-03"):
        result = contention.run(refuse, workers=1, mode="thread")
    text = result.errors[0].traceback
    assert "sessionstate_target" not in text
    assert "usercall" not in text
    assert "in refuse" in text


# -- explore(all_or_nothing=True) ----------------------------------------------------


def _naive_checkout() -> None:
    manager = StateManager("shop")
    manager.update_json("order.json", {"paid": True})
    manager.write_json("cart.json", {"items": []})


def _checkout() -> None:
    with StateManager("shop").transaction("shop.json") as shop:
        shop["order"]["paid"] = True
        shop["cart"] = []


@pytest.mark.parametrize("mode", ["kill", "error", "power-loss"])
def test_per_file_checks_pass_a_half_done_two_file_checkout(
    crash: CrashInjector, make_session, mode: str
) -> None:
    make_session("shop", {"order.json": {"paid": False}, "cart.json": {"items": ["tea"]}})
    assert crash.explore(_naive_checkout, mode=mode).ok  # what the docs warn about


@pytest.mark.parametrize("mode", ["kill", "error", "power-loss"])
def test_all_or_nothing_catches_it(crash: CrashInjector, make_session, mode: str) -> None:
    make_session("shop", {"order.json": {"paid": False}, "cart.json": {"items": ["tea"]}})
    report = crash.explore(_naive_checkout, mode=mode, all_or_nothing=True)
    assert not report.ok
    first = report.violations[0]
    assert first.found == (
        "a mix of old and new files: cart.json (session 'shop') old, "
        "order.json (session 'shop') new"
    )
    assert first.crash is not None
    assert first.crash.filename == "order.json"
    assert "all_or_nothing=True" in report.summary()
    # Deterministic, and the root is restored.
    assert crash.explore(_naive_checkout, mode=mode, all_or_nothing=True) == report
    assert StateManager("shop").read_json("order.json") == {"paid": False}


def test_all_or_nothing_passes_a_one_document_checkout(crash: CrashInjector, make_session):
    make_session("shop", {"shop.json": {"order": {"paid": False}, "cart": ["tea"]}})
    crash.explore(_checkout, mode="power-loss", all_or_nothing=True).assert_ok()


def test_all_or_nothing_must_be_a_bool(crash: CrashInjector) -> None:
    with pytest.raises(TypeError, match="all_or_nothing must be True or False, not int"):
        crash.explore(_checkout, all_or_nothing=1)  # type: ignore[arg-type]
