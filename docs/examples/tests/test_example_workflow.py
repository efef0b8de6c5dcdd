"""The workflow app's everyday tests: plain pytest, with a session root per test.

``session_root`` points the app at a fresh, empty directory for the test (the app
itself calls ``StateManager(session_id)`` with no settings: it picks the root up
from the settings in force).  ``make_session`` creates a session with files in
it, so a test starts from the state it needs instead of replaying the workflow.
"""

from __future__ import annotations

import json
import stat

import pytest
import workflow_app

from pytest_sessionstate import (
    SessionNotFoundError,
    Settings,
    StateManager,
    list_sessions,
)


def test_start_workflow_writes_every_step_pending(session_root):
    workflow_app.start_workflow("wf-1")

    path = session_root / "wf-1" / "session.json"
    assert path.is_file()
    # The standard json module reads the file back: nothing exotic is stored.
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "workflow_progress": {
            "initialize": "pending",
            "collect": "pending",
            "review": "pending",
            "publish": "pending",
        },
        "tickets_issued": 0,
    }
    assert list_sessions() == ["wf-1"]


def test_complete_step_updates_one_step_only(make_session):
    session = make_session(
        files={
            "session.json": {
                "workflow_progress": {"initialize": "pending", "collect": "pending"},
                "owner": "ada",
            }
        }
    )

    document = workflow_app.complete_step(session.session_id, "initialize")

    assert document["workflow_progress"] == {"initialize": "completed", "collect": "pending"}
    assert document["owner"] == "ada"
    assert session.read_json("session.json") == document


def test_workflow_is_finished_after_the_last_step(session_root):
    workflow_app.start_workflow("wf-2")
    for step in workflow_app.STEPS:
        assert not workflow_app.is_finished("wf-2")
        workflow_app.complete_step("wf-2", step)

    assert workflow_app.is_finished("wf-2")
    assert set(workflow_app.progress("wf-2").values()) == {"completed"}


def test_unknown_step_is_refused_and_nothing_changes(make_session):
    session = make_session(
        "wf-3", files={"session.json": {"workflow_progress": {"initialize": "pending"}}}
    )
    before = session.read_json("session.json")

    with pytest.raises(ValueError, match="unknown step 'deploy'"):
        workflow_app.complete_step("wf-3", "deploy")

    assert session.read_json("session.json") == before


def test_a_missing_session_is_reported_not_invented(session_root):
    assert not workflow_app.is_finished("never-started")
    with pytest.raises(SessionNotFoundError):
        workflow_app.progress("never-started")
    # Reading created nothing on disk.
    assert list_sessions() == []


def test_tickets_are_numbered_in_order(make_session):
    session = make_session(files={"session.json": {"tickets_issued": 0}})

    tickets = [workflow_app.next_ticket(session.session_id) for _ in range(5)]

    assert tickets == [1, 2, 3, 4, 5]
    assert session.read_json("session.json")["tickets_issued"] == 5


def test_checkout_pays_and_empties_the_cart_in_one_write(make_session):
    session = make_session(
        files={"shop.json": {"order": {"id": 7, "paid": False}, "cart": ["tea", "cups"]}}
    )

    workflow_app.checkout(session.session_id)

    assert session.read_json("shop.json") == {"order": {"id": 7, "paid": True}, "cart": []}


def test_make_session_gives_unique_ids_under_the_test_root(make_session, session_root):
    first = make_session()
    second = make_session()

    assert first.session_id != second.session_id
    assert first.session_dir.parent == session_root
    assert second.session_dir.parent == session_root


def test_session_settings_are_the_ones_in_force(session_settings, session_root):
    assert isinstance(session_settings, Settings)
    assert session_settings.root == session_root
    # Code that passes no settings= uses the test's root.
    assert StateManager("any-id").session_dir == session_root / "any-id"


def test_session_files_are_private_to_their_owner(session_root):
    workflow_app.start_workflow("wf-secret")

    session_dir = session_root / "wf-secret"
    assert stat.S_IMODE(session_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((session_dir / "session.json").stat().st_mode) == 0o600
