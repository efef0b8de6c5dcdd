"""The workflow app under contention: many processes at once, a lock held
elsewhere, a holder that died, and a lost update caught on every run.

``contention`` is the plugin's fixture (a ContentionSimulator bound to the test's
session root).  ``naive_next_ticket`` reads, increments and writes back without
holding the lock in between; ``next_ticket`` does the same inside one
``transaction``.  The tests hold both to the same promise, "no ticket is issued
twice", and the naive one is marked as the failure it is.
"""

from __future__ import annotations

import pytest
import workflow_app

from pytest_sessionstate import SessionLockError, StateManager


@pytest.fixture
def workflow(session_root):
    """A started workflow: every step pending, no ticket issued yet."""
    workflow_app.start_workflow("wf-1")
    return "wf-1"


def tickets_issued(session_id):
    return StateManager(session_id).read_json(workflow_app.SESSION_FILE)["tickets_issued"]


# --- many processes at once ----------------------------------------------------------


def test_six_processes_issue_150_distinct_tickets(contention, workflow):
    result = contention.run(workflow_app.next_ticket, args=(workflow,), workers=6, iterations=25)

    result.raise_errors()  # any exception in any worker fails the test, with its traceback
    assert sorted(result.returns) == list(range(1, 151))  # no ticket twice, none lost
    assert tickets_issued(workflow) == 150


# --- the race, replayed on every run --------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="naive_next_ticket reads and writes without the lock in between: "
    "the second caller's update is lost",
)
def test_naive_next_ticket_issues_distinct_tickets(contention, workflow):
    # first pauses right after its read; second runs to the end; then first goes on
    outcome = contention.interleave(
        workflow_app.naive_next_ticket,
        workflow_app.naive_next_ticket,
        pause_at="read",
        args=(workflow,),
    )

    first, second = outcome.values
    assert first != second  # fails: both callers read 0 and both issue ticket 1
    assert tickets_issued(workflow) == 2


def test_next_ticket_issues_distinct_tickets(contention, workflow):
    # the same schedule: first pauses after its read, inside the transaction's lock
    outcome = contention.interleave(
        workflow_app.next_ticket,
        workflow_app.next_ticket,
        pause_at="read",
        args=(workflow,),
    )

    first, second = outcome.values
    assert {first, second} == {1, 2}
    assert tickets_issued(workflow) == 2
    # second had to wait for first's lock, so the simulator let first finish first
    assert outcome.resumed == "lock-waiting"


# --- a lock held elsewhere, and one left by a dead holder --------------------------------


@pytest.mark.sessionstate(lock_timeout=0.5)
def test_a_busy_session_fails_fast_and_recovers(contention, workflow):
    with contention.hold_lock(workflow), pytest.raises(SessionLockError):
        workflow_app.complete_step(workflow, "initialize")

    # the other process let go at the end of the block
    assert (
        workflow_app.complete_step(workflow, "initialize")["workflow_progress"]["initialize"]
        == "completed"
    )


def test_a_holder_killed_inside_the_lock_blocks_nobody(contention, workflow):
    contention.stale_lock(workflow)  # a real process, SIGKILLed while holding the lock

    assert workflow_app.next_ticket(workflow) == 1
