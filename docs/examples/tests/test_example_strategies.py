"""The workflow app tested with generated input: the Hypothesis strategies of
``pytest_sessionstate.strategies``, and the session state machine extended with
a rule for the app.

``session_root_factory`` gives every Hypothesis example a fresh, empty root
(a function-scoped fixture such as ``session_root`` would be shared by all the
examples of a test, and Hypothesis refuses it).
"""

from __future__ import annotations

import pytest
import workflow_app
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test

from pytest_sessionstate import (
    SessionNotFoundError,
    SessionRootFactory,
    SessionValueError,
    StateManager,
    use_settings,
)
from pytest_sessionstate.dotpath import normalize
from pytest_sessionstate.stateful import SessionStateMachine
from pytest_sessionstate.strategies import (
    documents,
    dot_path_updates,
    invalid_session_ids,
    session_ids,
)


@settings(max_examples=50, deadline=None)
@given(session_id=session_ids(), step=st.sampled_from(workflow_app.STEPS))
def test_any_valid_session_id_runs_the_workflow(
    session_root_factory: SessionRootFactory, session_id: str, step: str
) -> None:
    with session_root_factory():
        workflow_app.start_workflow(session_id)
        workflow_app.complete_step(session_id, step)

        assert workflow_app.progress(session_id)[step] == "completed"


@settings(max_examples=100, deadline=None)
@given(bad=invalid_session_ids())
def test_hostile_session_ids_are_refused_and_nothing_is_written(
    session_root_factory: SessionRootFactory, bad: object
) -> None:
    with session_root_factory() as s:
        next_to_root = set(s.root.parent.iterdir())

        with pytest.raises(SessionValueError):
            workflow_app.start_workflow(bad)  # type: ignore[arg-type]

        # Refused before any filesystem access: the root is still empty, and
        # nothing appeared next to it (no "../x" escaped).
        assert list(s.root.iterdir()) == []
        assert set(s.root.parent.iterdir()) == next_to_root


@settings(max_examples=50, deadline=None)
@given(extra=documents(), step=st.sampled_from(workflow_app.STEPS))
def test_complete_step_keeps_whatever_else_the_session_holds(
    session_root_factory: SessionRootFactory, extra: dict, step: str
) -> None:
    with session_root_factory():
        workflow_app.start_workflow("wf")
        # Other code keeps its own data in the same document.
        StateManager("wf").update_json(workflow_app.SESSION_FILE, {"extra": extra})

        document = workflow_app.complete_step("wf", step)

        assert document["extra"] == extra
        assert document["workflow_progress"][step] == "completed"


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_every_update_reads_back(session_root_factory: SessionRootFactory, data) -> None:
    with session_root_factory():
        document = workflow_app.start_workflow("wf")
        # New paths, existing leaves and whole objects, as "a\\.b" strings or
        # ("a.b",) tuples, none a prefix of another: each reads back its value.
        updates = data.draw(dot_path_updates(document))

        result = StateManager("wf").update_json(workflow_app.SESSION_FILE, updates)

        for path, value in updates.items():
            node = result
            for segment in normalize(path):
                node = node[segment]
            assert node == value


# [start-machine]
# The machine as it is: random writes, updates, transactions, deletes, reads,
# locks and failed writes on a real StateManager, checked against a model.
@settings(max_examples=10, stateful_step_count=15, deadline=None)
class SessionMachine(SessionStateMachine):
    pass


TestSessionMachine = SessionMachine.TestCase
# [end-machine]


# [start-workflow-machine]
@settings(max_examples=20, stateful_step_count=15, deadline=None)
class WorkflowMachine(SessionStateMachine):
    """The base machine's rules, plus the app's own operations on the same session.

    The base rules work on the app's file only (``filenames``) and write random
    documents to it, so the app meets files it did not write: the model says what
    it must do with them.  ``complete_step`` is bound twice so that it is drawn
    as often as two base rules.
    """

    filenames = (workflow_app.SESSION_FILE,)

    @rule()
    def start_workflow(self) -> None:
        # The app makes its own StateManager: put the machine's root in force.
        with use_settings(self.settings):
            document = workflow_app.start_workflow(self.session_id)
        self.model[workflow_app.SESSION_FILE] = document

    @rule(step=st.sampled_from(workflow_app.STEPS))
    def complete_step(self, step: str) -> None:
        before = self.model.get(workflow_app.SESSION_FILE)
        with use_settings(self.settings):
            if before is None:
                with pytest.raises(SessionNotFoundError):
                    workflow_app.complete_step(self.session_id, step)
                return
            try:
                expected = self.apply_model_updates(
                    before, {("workflow_progress", step): "completed"}
                )
            except SessionValueError:  # "workflow_progress" is not an object in this file
                with pytest.raises(SessionValueError):
                    workflow_app.complete_step(self.session_id, step)
                return
            assert workflow_app.complete_step(self.session_id, step) == expected
        self.model[workflow_app.SESSION_FILE] = expected

    complete_another_step = complete_step


TestWorkflowMachine = WorkflowMachine.TestCase
# [end-workflow-machine]


# [start-planted-bug]
class DropsEscapedDots(StateManager):
    """A planted bug: update_json reads the key "a\\.b" as the path "a.b"."""

    __slots__ = ()

    def update_json(self, filename, updates):
        mangled = {
            key.replace("\\.", ".") if isinstance(key, str) else key: value
            for key, value in updates.items()
        }
        return super().update_json(filename, mangled)


class MachineWithTheBug(SessionStateMachine):
    def make_manager(self) -> StateManager:
        return DropsEscapedDots(self.session_id, settings=self.settings)


def test_the_machine_finds_the_planted_bug() -> None:
    with pytest.raises((AssertionError, SessionValueError)):
        run_state_machine_as_test(
            MachineWithTheBug,
            settings=settings(
                max_examples=50,
                stateful_step_count=10,
                deadline=None,
                derandomize=True,  # the same search on every run
                database=None,
                # Shrink one failure, not each distinct one; skip the "explain" phase.
                report_multiple_bugs=False,
                phases=[Phase.generate, Phase.shrink],
            ),
        )


# [end-planted-bug]
