"""CrashInjector.explore: the crash loop, each mode, the checks and the report."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pytest_sessionstate import Settings, StateManager, probes, use_settings
from pytest_sessionstate.testing.crash import Crash, CrashInjector, CrashReport
from pytest_sessionstate.testing.snapshot import take_snapshot

MODES = ["kill", "error", "power-loss"]


def test_the_crash_modes_have_one_name_of_their_own():
    from pytest_sessionstate.testing import crash

    assert list(crash.CRASH_MODES) == MODES
    assert crash.MODES is crash.CRASH_MODES


DURABLE_UPDATE = list(probes.WRITE_POINTS)
FAST_UPDATE = [p for p in probes.WRITE_POINTS if p not in ("temp-synced", "dir-synced")]


def update_one(session_id: str = "s1") -> None:
    StateManager(session_id).update_json("doc.json", {"count": 1, "status.state": "done"})


def two_file_checkout(session_id: str = "shop") -> None:
    """Order paid, then cart emptied: two files, two writes."""
    manager = StateManager(session_id)
    manager.update_json("order.json", {"paid": True})
    manager.write_json("cart.json", {"items": []})


def paid_means_empty_cart(snapshot):
    files = snapshot["shop"]
    assert not (files["order.json"]["paid"] and files["cart.json"]["items"]), (
        "a paid order whose items are still in the cart"
    )


@pytest.fixture
def one_doc(session_settings: Settings) -> StateManager:
    manager = StateManager("s1", settings=session_settings)
    manager.write_json("doc.json", {"count": 0, "status": {"state": "new"}})
    return manager


@pytest.fixture
def shop(session_settings: Settings) -> StateManager:
    manager = StateManager("shop", settings=session_settings)
    manager.write_json("order.json", {"id": 7, "paid": False})
    manager.write_json("cart.json", {"items": ["tea", "cups"]})
    return manager


@pytest.mark.parametrize("mode", MODES)
def test_a_single_update_is_crash_safe_at_every_hit(crash, one_doc, mode):
    before = take_snapshot(one_doc.settings.root)

    report = crash.explore(update_one, mode=mode)

    report.assert_ok()
    assert report.ok
    assert report.hits == len(DURABLE_UPDATE)
    assert report.runs == report.hits + 1
    assert report.complete
    assert [c.k for c in report.crashes] == list(range(1, report.hits + 1))
    assert [c.point for c in report.crashes] == DURABLE_UPDATE
    assert {c.session_id for c in report.crashes} == {"s1"}
    assert report.crashes[2] == Crash(3, "temp-created", "doc.json", "s1")
    # Exploring leaves the root exactly as it was.
    assert take_snapshot(one_doc.settings.root) == before


@pytest.mark.parametrize("mode", MODES)
def test_a_non_durable_update_has_fewer_hits(session_settings, one_doc, mode):
    injector = CrashInjector(session_settings.replace(durable=False))

    report = injector.explore(update_one, mode=mode)

    assert [c.point for c in report.crashes] == FAST_UPDATE
    assert report.runs == len(FAST_UPDATE) + 1


def test_power_loss_catches_a_missing_fsync(session_settings, one_doc):
    injector = CrashInjector(session_settings.replace(durable=False))

    report = injector.explore(update_one, mode="power-loss")

    assert not report.ok
    # The first crash that can lose data: right after the rename of an un-fsynced file.
    first = report.violations[0]
    assert (first.run, first.point, first.filename) == (5, "replaced", "doc.json")
    assert "un-fsynced data of doc.json" in first.state
    assert "does not parse" in first.found
    assert "the state before the run" in first.expected
    with pytest.raises(AssertionError, match=r"run 5, crashed right after 'replaced'"):
        report.assert_ok()


@pytest.mark.parametrize("mode", ["kill", "error"])
def test_a_missing_fsync_is_invisible_without_a_power_cut(session_settings, one_doc, mode):
    injector = CrashInjector(session_settings.replace(durable=False))

    injector.explore(update_one, mode=mode).assert_ok()


def test_power_loss_passes_the_default_durable_settings(crash, one_doc):
    assert crash.settings.durable

    report = crash.explore(update_one, mode="power-loss")

    report.assert_ok()
    assert report.runs == len(DURABLE_UPDATE) + 1


def test_power_loss_covers_a_new_session_and_a_delete(crash, one_doc):
    def create_then_delete() -> None:
        fresh = StateManager("fresh")
        fresh.write_json("a.json", {"a": 1})
        fresh.write_json("b.json", {"b": 2})
        fresh.delete("a.json")
        StateManager("s1").delete()

    report = crash.explore(create_then_delete, mode="power-loss")

    report.assert_ok()
    assert "removed" in [c.point for c in report.crashes]


@pytest.mark.parametrize("mode", MODES)
def test_a_two_file_checkout_violates_at_the_exact_crash_point(crash, shop, mode):
    report = crash.explore(two_file_checkout, mode=mode, check=paid_means_empty_cart)

    assert not report.ok
    # update_json of order.json: 8 hits, its rename is hit 6; write_json of cart.json: 7 hits,
    # its rename is hit 13.  From 6 to 12 the order is paid and the cart still full.
    assert report.runs == 8 + 7 + 1
    first = report.violations[0]
    assert first.run == 6
    assert first.crash == Crash(6, "replaced", "order.json", "shop")
    assert "a paid order whose items are still in the cart" in first.found
    assert first.snapshot["shop"]["order.json"]["paid"] is True
    assert first.snapshot["shop"]["cart.json"]["items"] == ["tea", "cups"]
    runs = sorted({v.run for v in report.violations})
    if mode == "power-loss":
        # A power cut right after cart.json's rename may undo it (not yet dir-synced).
        assert runs == list(range(6, 14))
    else:
        assert runs == list(range(6, 13))
    message = str(report)
    assert "run 6, crashed right after 'replaced' (order.json, session 'shop')" in message
    assert '"paid": true' in message


def test_the_single_file_checkout_passes_the_same_check(crash, session_settings):
    StateManager("shop").write_json("shop.json", {"order": {"paid": False}, "cart": ["tea"]})

    def checkout() -> None:
        with StateManager("shop").transaction("shop.json") as shop:
            shop["order"]["paid"] = True
            shop["cart"] = []

    def consistent(snapshot):
        shop = snapshot["shop"]["shop.json"]
        assert shop["order"]["paid"] == (shop["cart"] == [])

    for mode in MODES:
        crash.explore(checkout, mode=mode, check=consistent).assert_ok()


@pytest.mark.parametrize("mode", MODES)
def test_the_same_target_gives_the_same_report(crash, shop, mode):
    first = crash.explore(two_file_checkout, mode=mode, check=paid_means_empty_cart)
    second = crash.explore(two_file_checkout, mode=mode, check=paid_means_empty_cart)

    assert first == second
    assert str(first) == str(second)
    assert first.violations  # a report with content, not two empty ones


def test_a_check_returning_false_is_a_violation(crash, one_doc):
    report = crash.explore(update_one, mode="error", check=lambda snapshot: False)

    assert len(report.violations) == report.runs  # after every crash and after the last run
    assert report.violations[-1].crash is None
    assert "check(snapshot) returned False" in report.violations[-1].found


def test_the_check_sees_every_session_and_document(crash, one_doc, shop):
    seen = []

    def record(snapshot):
        seen.append(snapshot)

    crash.explore(update_one, mode="error", check=record)

    assert seen[0] == {
        "s1": {"doc.json": {"count": 0, "status": {"state": "new"}}},
        "shop": {
            "cart.json": {"items": ["tea", "cups"]},
            "order.json": {"id": 7, "paid": False},
        },
    }
    assert seen[-1]["s1"]["doc.json"] == {"count": 1, "status": {"state": "done"}}


@pytest.mark.parametrize("mode", MODES)
def test_a_target_that_raises_on_its_own_is_not_a_crash(crash, one_doc, mode):
    def update_then_fail() -> None:
        update_one()
        raise ValueError("the target's own bug")

    report = crash.explore(update_then_fail, mode=mode)

    assert report.runs == len(DURABLE_UPDATE) + 1
    assert len(report.crashes) == len(DURABLE_UPDATE)
    assert report.hits is None
    assert not report.ok
    (error,) = report.errors
    assert (error.run, error.hits, error.type, error.message) == (
        9,
        8,
        "ValueError",
        "the target's own bug",
    )
    assert "update_then_fail" in error.traceback
    with pytest.raises(AssertionError, match="raised ValueError: the target's own bug on its own"):
        report.assert_ok()


def test_a_target_that_raises_before_any_hit(crash, one_doc):
    report = crash.explore(StateManager("s1").read_json, args=("missing.json",), mode="error")

    assert report.runs == 1
    assert report.crashes == []
    assert report.errors[0].type == "pytest_sessionstate.errors.SessionNotFoundError"


def test_in_error_mode_the_fault_is_oserror_eio_and_may_be_handled(crash, one_doc):
    caught = []

    def tolerant() -> None:
        try:
            update_one()
        except OSError as exc:
            caught.append(exc.errno)

    report = crash.explore(tolerant, mode="error")

    report.assert_ok()
    assert caught == [errno.EIO] * len(DURABLE_UPDATE)
    assert len(report.crashes) == len(DURABLE_UPDATE)


def test_in_kill_mode_no_finally_runs_in_a_crashed_child(crash, one_doc, tmp_path):
    marks = tmp_path / "finally.log"

    def target() -> None:
        try:
            update_one()
        finally:
            with open(marks, "a") as f:
                f.write(f"{os.getpid()}\n")

    report = crash.explore(target, mode="kill")

    report.assert_ok()
    lines = marks.read_text().splitlines()
    assert len(lines) == 1  # only the run that completed untouched got to its finally
    assert lines[0] != str(os.getpid())  # and it ran in a child, not here


def test_a_hung_child_is_killed_and_reported(crash, one_doc):
    def hang() -> None:
        update_one()
        import time

        time.sleep(30)

    report = crash.explore(hang, mode="kill", timeout=0.5, max_runs=20)

    assert report.errors[-1].type == "timeout"
    assert "did not finish within 0.5 s" in report.errors[-1].message


def test_a_leaked_lock_is_a_violation(crash, one_doc):
    held = []

    def leak() -> None:
        manager = StateManager("s1")
        context = manager.lock()
        context.__enter__()
        held.append(context)

    report = crash.explore(leak, mode="error")
    for context in held:  # clean up what the target leaked in this process
        context.__exit__(None, None, None)

    assert any("the lock not free" in v.found for v in report.violations)


def test_max_runs_stops_the_loop(crash, one_doc):
    report = crash.explore(update_one, mode="error", max_runs=3)

    assert report.runs == 3
    assert not report.complete
    assert report.hits is None
    assert "stopped by max_runs" in report.summary()


def test_the_target_runs_under_the_injector_settings(tmp_path, session_settings):
    other = Settings(tmp_path / "other-root", durable=False)
    StateManager("s1", settings=other).write_json("doc.json", {"count": 0})
    seen = []

    def target() -> None:
        seen.append(StateManager("s1").settings)
        update_one()

    CrashInjector(other).explore(target, mode="error").assert_ok()

    assert set(seen) == {other}
    assert os.listdir(session_settings.root) == []


def test_no_listener_is_left_behind(crash, one_doc):
    for mode in MODES:
        crash.explore(update_one, mode=mode)
    assert probes.listeners == ()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"target": "not callable"}, TypeError, "target must be callable, not str"),
        ({"target": None}, TypeError, "target must be callable, not NoneType"),
        ({"target": 5}, TypeError, "target must be callable, not int"),
        ({"target": update_one, "mode": "reboot"}, ValueError, "mode must be one of .*'reboot'"),
        ({"target": update_one, "mode": "KILL"}, ValueError, "mode must be one of .*, not 'KILL'"),
        ({"target": update_one, "mode": 1}, TypeError, "mode must be one of .*, not int"),
        ({"target": update_one, "check": 3}, TypeError, "check must be callable or None, not int"),
        ({"target": update_one, "max_runs": 0}, ValueError, "max_runs must be an integer >= 1"),
        ({"target": update_one, "max_runs": "9"}, TypeError, "max_runs must be an integer >= 1"),
        ({"target": update_one, "timeout": 0}, ValueError, "timeout must be a positive number"),
        ({"target": update_one, "args": "ab"}, TypeError, "args must be a sequence"),
        ({"target": update_one, "kwargs": [1]}, TypeError, "kwargs must be a mapping or None"),
    ],
)
def test_bad_arguments_are_a_clear_type_or_value_error(crash, kwargs, error, message):
    target = kwargs.pop("target")
    with pytest.raises(error, match=message):
        crash.explore(target, **kwargs)


def test_an_empty_report_is_ok():
    report = CrashReport("kill")
    report.assert_ok()
    assert report.ok


def test_the_fixture_is_bound_to_the_test_settings(crash, session_settings, session_root):
    assert isinstance(crash, CrashInjector)
    assert crash.settings == session_settings
    assert crash.settings.root == session_root


def test_explore_from_an_empty_root(crash, session_root: Path):
    def start() -> None:
        StateManager("new").write_json("doc.json", {"step": 1})

    report = crash.explore(start, mode="power-loss")

    report.assert_ok()
    assert report.crashes[0].point == "lock-acquired"
    assert os.listdir(session_root) == []
    with use_settings(crash.settings):
        assert not StateManager("new").exists()
