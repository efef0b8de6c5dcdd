"""The ``crash`` fixture as users meet it: pytester runs, with and without xdist."""

from __future__ import annotations

import pytest

SUITE = """
import pytest

from pytest_sessionstate import CrashInjector, CrashReport, StateManager

MODES = ["kill", "error", "power-loss"]


def update(session_id):
    StateManager(session_id).update_json("doc.json", {"count": 1})


def naive_checkout(session_id):
    manager = StateManager(session_id)
    manager.update_json("order.json", {"paid": True})
    manager.write_json("cart.json", {"items": []})


def consistent(snapshot):
    files = snapshot["shop"]
    assert not (files["order.json"]["paid"] and files["cart.json"]["items"]), (
        "a paid order whose items are still in the cart"
    )


@pytest.fixture
def shop():
    manager = StateManager("shop")
    manager.write_json("order.json", {"paid": False})
    manager.write_json("cart.json", {"items": ["tea"]})
    return manager


@pytest.mark.parametrize("mode", MODES)
def test_single_update_is_crash_safe(crash, mode):
    assert isinstance(crash, CrashInjector)
    StateManager("s1").write_json("doc.json", {"count": 0})

    report = crash.explore(update, args=("s1",), mode=mode)

    assert isinstance(report, CrashReport)
    report.assert_ok()
    assert report.runs == report.hits + 1 == len(crash.points) + 1
    assert [c.point for c in report.crashes] == list(crash.points)


@pytest.mark.parametrize("mode", MODES)
def test_two_file_checkout_violates_at_the_exact_point(crash, shop, mode):
    report = crash.explore(naive_checkout, args=("shop",), mode=mode, check=consistent)

    assert not report.ok
    assert tuple(report.violations[0].crash) == (6, "replaced", "order.json", "shop")
    with pytest.raises(AssertionError, match="run 6, crashed right after 'replaced'"):
        report.assert_ok()


def test_the_same_report_twice(crash, shop):
    first = crash.explore(naive_checkout, args=("shop",), check=consistent)
    second = crash.explore(naive_checkout, args=("shop",), check=consistent)

    assert first == second
    assert str(first) == str(second)


@pytest.mark.sessionstate(durable=False)
def test_power_loss_catches_the_missing_fsync(crash):
    assert not crash.settings.durable
    StateManager("s1").write_json("doc.json", {"count": 0})

    report = crash.explore(update, args=("s1",), mode="power-loss")

    assert not report.ok
    assert report.violations[0].point == "replaced"


def test_power_loss_passes_the_default(crash):
    StateManager("s1").write_json("doc.json", {"count": 0})

    crash.explore(update, args=("s1",), mode="power-loss").assert_ok()


def test_assert_ok_fails_the_test_readably(crash, shop):
    crash.explore(naive_checkout, args=("shop",), check=consistent).assert_ok()
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_the_crash_fixture_in_a_test_run(pytester, xdist):
    pytester.makepyfile(test_crashes=SUITE)
    args = ["-p", "no:randomly", "-p", "no:cacheprovider"]
    if xdist:
        args += ["-n", "2"]

    result = pytester.runpytest(*args)

    result.assert_outcomes(passed=9, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*crash exploration (mode 'kill'): 16 runs, 15 probe hits*",
            "*run 6, crashed right after 'replaced' (order.json, session 'shop')*",
            "*found check(snapshot) failed: AssertionError: a paid order whose items*",
        ]
    )


def test_the_fixture_uninstalls_a_fault_left_open(pytester):
    pytester.makepyfile(
        test_leak="""
        from pytest_sessionstate import probes

        OPEN = []

        def test_leaves_a_fault_open(crash):
            OPEN.append(crash.fail_at("replaced"))  # kept alive: never exited
            OPEN[0].__enter__()
            assert len(probes.listeners) == 1

        def test_next_test_is_clean():
            assert probes.listeners == ()
        """
    )

    result = pytester.runpytest("-p", "no:randomly")

    result.assert_outcomes(passed=2)
