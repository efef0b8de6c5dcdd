"""The workflow app tested with the other fixtures, the marker and the ini options.

- ``session_settings``: the settings the app picks up in this test.
- ``@pytest.mark.sessionstate``: a shorter lock timeout to test "the session is busy".
- ``session_root_factory``: a fresh root for every Hypothesis example.
- ``shared_session_root``: one root for the whole run, on every xdist worker.
"""

from __future__ import annotations

import threading

import pytest
import workflow_app
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_sessionstate import (
    MakeSession,
    SessionLockError,
    SessionRootFactory,
    Settings,
    StateManager,
    current_settings,
    use_settings,
)


def test_the_app_uses_the_test_settings(session_settings: Settings) -> None:
    # The app never passes settings=: it gets the ones in force, which the
    # fixture made point at this test's fresh root.
    assert current_settings() is session_settings
    workflow_app.start_workflow("wf-1")
    assert (session_settings.root / "wf-1" / "session.json").is_file()


def test_tickets_continue_from_the_stored_count(make_session: MakeSession) -> None:
    session = make_session(files={"session.json": {"tickets_issued": 41}})

    assert workflow_app.next_ticket(session.session_id) == 42
    assert session.read_json("session.json") == {"tickets_issued": 42}


@pytest.mark.sessionstate(lock_timeout=0.2, durable=False)
def test_a_busy_session_is_reported_not_waited_for(make_session: MakeSession) -> None:
    session = make_session(files={"session.json": {"tickets_issued": 0}})
    holding, done = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with session.lock():
            holding.set()
            done.wait(timeout=10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        # The marker's 0.2 s lock timeout applies to the app's own StateManager.
        with pytest.raises(SessionLockError) as caught:
            workflow_app.next_ticket(session.session_id)
        assert caught.value.details["timeout"] == 0.2
    finally:
        done.set()
        holder.join(timeout=10)
    assert workflow_app.next_ticket(session.session_id) == 1


@settings(max_examples=25, deadline=None)
@given(order=st.permutations(workflow_app.STEPS), done=st.integers(0, len(workflow_app.STEPS)))
def test_finished_only_when_every_step_is_done(
    session_root_factory: SessionRootFactory, order: list[str], done: int
) -> None:
    # A fresh, empty root for every example: no state leaks between examples.
    with session_root_factory():
        workflow_app.start_workflow("wf")
        for step in order[:done]:
            workflow_app.complete_step("wf", step)

        assert workflow_app.is_finished("wf") == (done == len(workflow_app.STEPS))


@pytest.mark.parametrize("buyer", ["ada", "grace", "edsger", "barbara"])
def test_tickets_are_unique_across_the_whole_run(shared_session_root, buyer: str) -> None:
    # Every test of the run, on every xdist worker, sees this one root.
    with use_settings(Settings(shared_session_root)):
        box_office = StateManager("box-office")
        with box_office.transaction("session.json", default={"tickets_issued": 0}):
            pass  # create the counter if this test is the first one
        ticket = workflow_app.next_ticket("box-office")

        with box_office.transaction("issued.json", default={"tickets": {}}) as issued:
            assert str(ticket) not in issued["tickets"], "a ticket was issued twice"
            issued["tickets"][str(ticket)] = buyer
