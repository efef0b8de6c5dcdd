"""The workflow app under crashes: killed, failed and power-cut at every write step.

``crash.explore(target)`` runs ``target`` once per probe hit, crashing it at hit
1, then 2, ... until a run completes untouched, restoring the session root
before each run; after every crash it checks what is left on disk (every file
parses and holds its old or its new document, the lock is free, the next update
works) and runs our own consistency check on the documents.
"""

from __future__ import annotations

import errno

import pytest
import workflow_app

from pytest_sessionstate import CrashInjector, StateManager

MODES = ["kill", "error", "power-loss"]


@pytest.mark.parametrize("mode", MODES)
def test_completing_a_step_survives_a_crash_at_every_point(crash: CrashInjector, mode):
    workflow_app.start_workflow("wf-1")

    report = crash.explore(workflow_app.complete_step, args=("wf-1", "collect"), mode=mode)

    report.assert_ok()
    # One run per probe hit of the update, plus the run that completed untouched.
    assert report.runs == report.hits + 1
    assert [c.point for c in report.crashes] == list(crash.points)


def steps_complete_in_order(snapshot):
    for files in snapshot.values():
        if "session.json" not in files:  # a crash before the first write completed
            continue
        statuses = list(files["session.json"]["workflow_progress"].values())
        done = statuses.count("completed")
        assert statuses == ["completed"] * done + ["pending"] * (len(statuses) - done)


def test_a_whole_workflow_survives_a_power_cut_anywhere(crash: CrashInjector):
    def run_workflow():
        workflow_app.start_workflow("wf-2")
        for step in workflow_app.STEPS:
            workflow_app.complete_step("wf-2", step)

    report = crash.explore(run_workflow, mode="power-loss", check=steps_complete_in_order)

    report.assert_ok()
    assert report.runs == report.hits + 1


# A paid order must have an empty cart, whatever the moment of the crash.
def paid_orders_have_empty_carts(snapshot):
    for session_id, files in snapshot.items():
        if "shop.json" in files:  # checkout: one document
            order, cart = files["shop.json"]["order"], files["shop.json"]["cart"]
        else:  # naive_checkout: two documents
            order, cart = files["order.json"], files["cart.json"]["items"]
        assert not (order["paid"] and cart), f"{session_id}: order paid, cart still {cart}"


@pytest.mark.parametrize("mode", MODES)
def test_checkout_is_all_or_nothing(crash: CrashInjector, mode):
    StateManager("shop-1").write_json(
        "shop.json", {"order": {"id": 7, "paid": False}, "cart": ["tea", "cups"]}
    )

    report = crash.explore(
        workflow_app.checkout, args=("shop-1",), mode=mode, check=paid_orders_have_empty_carts
    )

    report.assert_ok()


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="naive_checkout writes two files: a crash between the writes leaves a paid "
    "order whose items are still in the cart (first caught right after 'replaced' of "
    "order.json)",
)
def test_naive_checkout_is_all_or_nothing(crash: CrashInjector):
    manager = StateManager("shop-2")
    manager.write_json("order.json", {"id": 8, "paid": False})
    manager.write_json("cart.json", {"items": ["tea", "cups"]})

    report = crash.explore(
        workflow_app.naive_checkout, args=("shop-2",), check=paid_orders_have_empty_carts
    )

    report.assert_ok()  # AssertionError: run 6, crashed right after 'replaced' (order.json...


def test_all_or_nothing_finds_the_naive_checkout_without_a_check(crash: CrashInjector):
    manager = StateManager("shop-3")
    manager.write_json("order.json", {"id": 9, "paid": False})
    manager.write_json("cart.json", {"items": ["tea"]})

    # The built-in checks are per file: each file is old or new, so this passes...
    assert crash.explore(workflow_app.naive_checkout, args=("shop-3",)).ok
    # ...while the whole root must be all old or all new with all_or_nothing=True.
    report = crash.explore(workflow_app.naive_checkout, args=("shop-3",), all_or_nothing=True)
    assert not report.ok
    assert report.violations[0].found == (
        "a mix of old and new files: cart.json (session 'shop-3') old, "
        "order.json (session 'shop-3') new"
    )


@pytest.mark.sessionstate(durable=False)
def test_without_fsync_a_power_cut_can_empty_the_session(crash: CrashInjector):
    workflow_app.start_workflow("wf-3")

    report = crash.explore(workflow_app.complete_step, args=("wf-3", "review"), mode="power-loss")

    # durable=False skips the fsyncs: the rename can reach the disk before the data.
    assert not report.ok
    first = report.violations[0]
    assert (first.point, first.filename) == ("replaced", "session.json")
    assert "does not parse" in first.found


def test_a_full_disk_keeps_the_old_progress(crash: CrashInjector, make_session):
    session = make_session(files={"session.json": {"workflow_progress": {"collect": "pending"}}})

    with (
        crash.fail_at("temp-written", errno=errno.ENOSPC) as fault,
        pytest.raises(OSError, match="No space left on device") as caught,
    ):
        workflow_app.complete_step(session.session_id, "collect")

    assert fault.fired
    assert caught.value.errno == errno.ENOSPC
    assert workflow_app.progress(session.session_id) == {"collect": "pending"}
    assert session.list_files() == ["session.json"]  # no temp file left behind
