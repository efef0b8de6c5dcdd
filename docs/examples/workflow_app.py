"""A small downstream application: it keeps a workflow's progress in sessions.

This is what a user of pytest-sessionstate ships; ``tests/`` is its test
suite, written with the plugin's fixtures and strategies.  Two functions come
in a deliberately naive variant next to the right one, so the suite can show
what the tools catch.
"""

from __future__ import annotations

from typing import Any

from pytest_sessionstate import SessionNotFoundError, StateManager

SESSION_FILE = "session.json"
STEPS = ("initialize", "collect", "review", "publish")


def start_workflow(session_id: str) -> dict[str, Any]:
    """Create a session whose steps are all pending."""
    document: dict[str, Any] = {
        "workflow_progress": dict.fromkeys(STEPS, "pending"),
        "tickets_issued": 0,
    }
    StateManager(session_id).write_json(SESSION_FILE, document)
    return document


def complete_step(session_id: str, step: str) -> dict[str, Any]:
    """Mark one step completed (a dot-path update under the session lock)."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; expected one of {STEPS}")
    return StateManager(session_id).update_json(
        SESSION_FILE, {f"workflow_progress.{step}": "completed"}
    )


def progress(session_id: str) -> dict[str, str]:
    """The status of every step."""
    progress: dict[str, str] = StateManager(session_id).read_json(SESSION_FILE)["workflow_progress"]
    return progress


def is_finished(session_id: str) -> bool:
    """Whether every step is completed."""
    try:
        return all(status == "completed" for status in progress(session_id).values())
    except SessionNotFoundError:
        return False


def next_ticket(session_id: str) -> int:
    """Issue the next ticket number: read, increment and write under one lock."""
    with StateManager(session_id).transaction(SESSION_FILE) as document:
        document["tickets_issued"] += 1
        ticket: int = document["tickets_issued"]
    return ticket


def naive_next_ticket(session_id: str) -> int:
    """The same, written the naive way: read, then write, with no lock in between.

    Two callers can read the same number and both write it back: a lost update.
    """
    manager = StateManager(session_id)
    document = manager.read_json(SESSION_FILE)
    document["tickets_issued"] += 1
    manager.write_json(SESSION_FILE, document)
    ticket: int = document["tickets_issued"]
    return ticket


def checkout(session_id: str) -> None:
    """Pay the order and empty the cart in one atomic write of one document."""
    with StateManager(session_id).transaction("shop.json") as shop:
        shop["order"]["paid"] = True
        shop["cart"] = []


def naive_checkout(session_id: str) -> None:
    """The same across two files: a crash between the writes leaves a paid order
    whose items are still in the cart."""
    manager = StateManager(session_id)
    manager.update_json("order.json", {"paid": True})
    manager.write_json("cart.json", {"items": []})
