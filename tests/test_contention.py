"""The ``contention`` fixture as users meet it: pytester runs of user test files,
on their own and under xdist (``-n 2``).

Every promise of the issue's "done when" list is a test in the user file below:
no lost update with 6 processes (and 6 threads) x 25 increments, worker errors
reported with type and traceback, a sleeping worker killed at the timeout,
``hold_lock`` and ``stale_lock`` on a real lock, and the ``interleave`` race
reproduced three times in a row.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# The consumer the user tests: the workflow app's two ticket counters, inline so the
# user file stands alone (docs/examples has the same pair).
CONSUMER = """
from pytest_sessionstate import StateManager

FILE = "session.json"


def next_ticket(session_id):
    with StateManager(session_id).transaction(FILE) as document:
        document["tickets_issued"] += 1
        return document["tickets_issued"]


def naive_next_ticket(session_id):
    manager = StateManager(session_id)
    document = manager.read_json(FILE)
    document["tickets_issued"] += 1
    manager.write_json(FILE, document)
    return document["tickets_issued"]
"""

USER_TESTS = """
import os
import signal
import time

import pytest

from consumer import naive_next_ticket, next_ticket
from pytest_sessionstate import (
    ContentionResult, ContentionSimulator, SessionLockError, StateManager,
)
from pytest_sessionstate.testing.contention import ContentionError, WorkerTimeoutError


def fresh(make_session):
    return make_session(files={"session.json": {"tickets_issued": 0}})


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_no_lost_update(contention, make_session, mode):
    assert isinstance(contention, ContentionSimulator)
    session = fresh(make_session)
    result = contention.run(
        next_ticket, args=(session.session_id,), workers=6, iterations=25, mode=mode
    )
    assert isinstance(result, ContentionResult)
    result.raise_errors()
    assert result.ok and result.mode == mode
    assert sorted(result.returns) == list(range(1, 151))
    assert session.read_json("session.json")["tickets_issued"] == 150
    # one outermost lock acquisition per transaction, each measured at the probe point
    assert len(result.lock_waits) == 150
    assert all(wait >= 0 for wait in result.lock_waits)
    assert result.elapsed > 0


def test_closures_and_lambdas_run_in_processes(contention, make_session):
    session = fresh(make_session)
    pids = contention.run(lambda: os.getpid(), workers=3).returns
    assert len(set(pids)) == 3 and os.getpid() not in pids
    result = contention.run(lambda: next_ticket(session.session_id), workers=3, iterations=2)
    assert sorted(result.returns) == [1, 2, 3, 4, 5, 6]


def flaky(session_id):
    ticket = next_ticket(session_id)
    if ticket % 5 == 0:
        raise ValueError(f"ticket {ticket} is unlucky")
    return ticket


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_errors_are_reported_with_type_and_traceback(contention, make_session, mode):
    session = fresh(make_session)
    result = contention.run(flaky, args=(session.session_id,), workers=2, iterations=10, mode=mode)
    assert not result.ok
    assert len(result.errors) == 4 and len(result.returns) == 16
    for error in result.errors:
        assert error.worker in (0, 1) and 0 <= error.iteration < 10
        assert error.exc_type == "ValueError"
        assert error.message.endswith("is unlucky")
        assert "in flaky" in error.traceback
        assert 'raise ValueError(f"ticket {ticket} is unlucky")' in error.traceback
        assert isinstance(error.exception, ValueError)
    with pytest.raises(ContentionError, match="4 error") as info:
        result.raise_errors()
    assert "ValueError: ticket 5 is unlucky" in str(info.value)
    assert isinstance(info.value.__cause__, ValueError)


def test_a_sleeping_worker_is_killed_at_the_timeout(contention, tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()

    def sleeper():
        (pid_dir / str(os.getpid())).touch()
        time.sleep(120)

    started = time.monotonic()
    result = contention.run(sleeper, workers=2, timeout=1.5)
    assert time.monotonic() - started < 10  # killed within a few seconds of the timeout
    assert result.timed_out == [0, 1]
    assert [e.exc_type for e in result.errors] == [
        "pytest_sessionstate.testing.results.WorkerTimeoutError"
    ] * 2
    assert all("SIGKILL" in e.message and e.iteration == 0 for e in result.errors)
    pids = [int(path.name) for path in pid_dir.iterdir()]
    assert len(pids) == 2 and all(gone(pid) for pid in pids)


@pytest.mark.sessionstate(lock_timeout=0.5)
def test_hold_lock_blocks_others_and_frees_after(contention, make_session):
    session = fresh(make_session)
    with contention.hold_lock(session) as holder:
        assert holder.pid != os.getpid() and not gone(holder.pid)
        with pytest.raises(SessionLockError) as info:
            with session.lock(timeout=0.2):
                pass
        assert info.value.details["timeout"] == 0.2
    assert gone(holder.pid)
    with session.lock(timeout=0.2):
        pass
    with contention.hold_lock(session.session_id):  # a session id works too
        with pytest.raises(SessionLockError):
            session.update_json("session.json", {"x": 1})
    assert session.update_json("session.json", {"x": 1})["x"] == 1


def test_stale_lock_leaves_a_free_lock(contention, make_session):
    session = fresh(make_session)
    killed = contention.stale_lock(session)
    assert killed.exitcode == -signal.SIGKILL and gone(killed.pid)
    assert session.lock_file.exists()  # the dead holder's lock file stays
    started = time.monotonic()
    with session.lock(timeout=0):  # free at once: one attempt is enough
        pass
    assert session.update_json("session.json", {"after": "crash"})["after"] == "crash"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_interleave_loses_the_naive_update_every_time(contention, make_session, attempt):
    session = fresh(make_session)
    outcome = contention.interleave(
        naive_next_ticket, naive_next_ticket, args=(session.session_id,)
    )
    assert outcome.paused and outcome.resumed == "after-second"
    assert outcome.values == (1, 1)  # both read 0: one update lost
    assert session.read_json("session.json")["tickets_issued"] == 1


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_interleave_keeps_both_transactions_every_time(contention, make_session, attempt):
    session = fresh(make_session)
    outcome = contention.interleave(next_ticket, next_ticket, args=(session.session_id,))
    assert outcome.paused and outcome.resumed == "lock-waiting"
    assert outcome.values == (1, 2)  # first finished first: second waited for its lock
    assert session.read_json("session.json")["tickets_issued"] == 2
"""


@pytest.fixture
def user_project(pytester: pytest.Pytester) -> pytest.Pytester:
    # pytest-asyncio (a test extra) warns at start-up unless the loop scope is set,
    # and this user turns warnings into errors, as careful users do.
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(consumer=CONSUMER, test_user=USER_TESTS)
    pytester.syspathinsert()
    return pytester


@pytest.mark.parametrize(
    "options",
    [pytest.param(("-p", "no:xdist"), id="plain"), pytest.param(("-n", "2"), id="xdist")],
)
def test_user_suite(user_project: pytest.Pytester, options: tuple[str, ...]) -> None:
    result = user_project.runpytest_subprocess(*options, timeout=280)
    result.assert_outcomes(passed=14)
