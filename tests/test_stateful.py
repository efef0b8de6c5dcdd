"""The session state machine: it passes against the real StateManager, cleans up
after itself, and finds bugs planted in the manager or in the model."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from pytest_sessionstate import SessionValueError, StateManager, current_settings
from pytest_sessionstate.dotpath import Path as DotPath
from pytest_sessionstate.stateful import SessionStateMachine

BOUNDED = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
# A planted bug must be found on every run: the search is reproducible, and one
# failure is shrunk (not every distinct one) with no "explain" phase (which
# reruns the program many times over to annotate it): seconds, not minutes.
HUNT = settings(
    BOUNDED,
    max_examples=50,
    stateful_step_count=10,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,
    phases=[Phase.generate, Phase.shrink],
)
# Only whether it is found.
FIND = settings(HUNT, phases=[Phase.generate])


@BOUNDED
class BoundedSessionMachine(SessionStateMachine):
    """The machine as users run it, with CI-sized bounds."""


TestSessionStateMachine = BoundedSessionMachine.TestCase


def _steps(error: BaseException) -> list[str]:
    """The rules of the failing program Hypothesis reports (invariants left out)."""
    notes = "\n".join(getattr(error, "__notes__", []))
    steps = [line for line in notes.splitlines() if line.startswith("state.")]
    return [
        line.split("(")[0].removeprefix("state.")
        for line in steps
        if not line.startswith(("state.disk_matches_model(", "state.no_temp_files("))
    ]


# -- cleanup --------------------------------------------------------------------------


def test_each_run_has_its_own_root_and_teardown_removes_it():
    first, second = SessionStateMachine(), SessionStateMachine()
    try:
        assert first.root != second.root
        assert first.settings.durable is False
        first.write(filename="session.json", document={"a": 1})
        first.disk_matches_model()
        assert (first.root / "machine" / "session.json").is_file()
        # The machine passes its settings explicitly: the defaults are untouched.
        assert current_settings().root != first.root
    finally:
        first.teardown()
        second.teardown()
    assert not first.root.exists()
    assert not second.root.exists()


def test_the_invariants_see_a_file_changed_behind_the_models_back():
    machine = SessionStateMachine()
    try:
        machine.write(filename="session.json", document={"a": 1})
        StateManager("machine", settings=machine.settings).write_json("session.json", {"a": 2})
        with pytest.raises(AssertionError, match="differs"):
            machine.disk_matches_model()
    finally:
        machine.teardown()


def test_the_invariants_see_a_temp_file_left_behind():
    machine = SessionStateMachine()
    try:
        machine.write(filename="session.json", document={})
        (machine.manager.session_dir / ".session.json.0123456789abcdef.tmp").write_text("{")
        with pytest.raises(AssertionError, match="temp files left behind"):
            machine.no_temp_files()
    finally:
        machine.teardown()


# -- planted bugs ---------------------------------------------------------------------


class DropsEscapedDots(StateManager):
    """update_json that reads ``a\\.b`` as the path ``a.b`` (the escape is dropped)."""

    __slots__ = ()

    def update_json(self, filename: str, updates: Mapping[DotPath, Any]) -> dict[str, Any]:
        mangled = {
            key.replace("\\.", ".") if isinstance(key, str) else key: value
            for key, value in updates.items()
        }
        return super().update_json(filename, mangled)


class WritesOnError(StateManager):
    """A transaction that writes the dict back even when the block raised."""

    __slots__ = ()

    @contextmanager
    def transaction(
        self, filename: str, *, default: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        error: BaseException | None = None
        with super().transaction(filename, default=default) as document:
            try:
                yield document
            except BaseException as exc:  # held back until the write has been made
                error = exc
        if error is not None:
            raise error


class SwallowsWriteErrors(StateManager):
    """write_json that ignores OS errors: the caller believes the write happened."""

    __slots__ = ()

    def write_json(self, filename: str, data: Mapping[str, Any]) -> None:
        with suppress(OSError):
            super().write_json(filename, data)


def _machine_with(manager_class: type[StateManager]) -> type[SessionStateMachine]:
    class PlantedBug(SessionStateMachine):
        def make_manager(self) -> StateManager:
            return manager_class(self.session_id, settings=self.settings)

    PlantedBug.__name__ = f"MachineWith{manager_class.__name__}"
    return PlantedBug


@pytest.mark.parametrize(
    ("manager_class", "rule"),
    [
        # Both rules that call update_json can show this one; which is found first
        # depends on the Hypothesis version's search.
        (DropsEscapedDots, ("update", "reentrant_lock")),
        (WritesOnError, ("transaction",)),
        (SwallowsWriteErrors, ("fail_mid_write",)),
    ],
)
def test_the_machine_finds_a_bug_planted_in_the_manager_and_shrinks_it(manager_class, rule):
    with pytest.raises((AssertionError, SessionValueError)) as info:
        run_state_machine_as_test(_machine_with(manager_class), settings=HUNT)
    # Shrunk to a few steps, the last of them the rule at fault.
    steps = _steps(info.value)
    assert steps[-1] == "teardown", steps
    assert steps[-2] in rule, steps
    # Shrunk to a handful of steps (the 10-step run it started from is longer).  How
    # far depends on the Hypothesis release's shrinker: current ones reach 2 to 4
    # steps, some runs and older releases keep a few deletes before the culprit.
    assert len(steps) <= 6, steps


class ModelDropsEscapedDots(SessionStateMachine):
    """A model with the bug, the manager right: the machine must see the difference."""

    def apply_model_updates(
        self, document: Mapping[str, Any], updates: Mapping[DotPath, Any]
    ) -> dict[str, Any]:
        mangled = {
            key.replace("\\.", ".") if isinstance(key, str) else key: value
            for key, value in updates.items()
        }
        return super().apply_model_updates(document, mangled)


def test_the_machine_finds_a_bug_planted_in_the_model():
    with pytest.raises((AssertionError, SessionValueError)) as info:
        run_state_machine_as_test(ModelDropsEscapedDots, settings=FIND)
    assert "teardown" in _steps(info.value)


def test_the_correct_machine_passes_the_same_search():
    run_state_machine_as_test(SessionStateMachine, settings=HUNT)
