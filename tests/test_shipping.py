"""An exception crosses from a child process to the test process one way, everywhere."""

from __future__ import annotations

import pickle

from pytest_sessionstate import SessionLockError
from pytest_sessionstate.testing import WorkerError, WorkerTimeoutError
from pytest_sessionstate.testing.results import land_exception, ship_exception


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling here")


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_a_picklable_exception_lands_as_itself_with_its_words():
    exc = raised(SessionLockError("busy", details={"session_id": "s1", "timeout": 0}))
    exc_type, message, trace, blob = ship_exception(exc)
    assert exc_type == "pytest_sessionstate.errors.SessionLockError"
    assert message == "busy"
    assert "raise exc" in trace
    landed = land_exception(blob)
    assert isinstance(landed, SessionLockError)
    assert landed.details == {"session_id": "s1", "timeout": 0}


def test_an_exception_that_does_not_pickle_is_shipped_as_words_only():
    exc_type, message, trace, blob = ship_exception(raised(Unpicklable("odd")))
    assert blob is None
    assert exc_type.endswith("Unpicklable")
    assert message == "odd"
    error = WorkerError.from_shipped(3, 7, (exc_type, message, trace, blob))
    assert error.exception is None
    assert error.where == "worker 3, iteration 7"
    assert "odd" in error.describe()


def test_bytes_that_do_not_unpickle_or_are_no_exception_land_as_nothing():
    assert land_exception(None) is None
    assert land_exception(b"not a pickle") is None
    assert land_exception(pickle.dumps(["a list"])) is None


def test_a_runners_own_failure_has_a_type_and_no_traceback():
    error = WorkerError.of_runner(1, None, WorkerTimeoutError, "still running")
    assert error.exc_type == "pytest_sessionstate.testing.results.WorkerTimeoutError"
    assert (error.traceback, error.exception) == ("", None)
    assert error.describe() == (
        "worker 1: pytest_sessionstate.testing.results.WorkerTimeoutError: still running"
    )
