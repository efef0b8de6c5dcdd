"""The error classes: hierarchy, details, and pickling across processes."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest

import pytest_sessionstate
from pytest_sessionstate import (
    SessionCorruptError,
    SessionError,
    SessionLockError,
    SessionNotFoundError,
    SessionTypeError,
    SessionValueError,
)

SUBCLASSES = [
    SessionLockError,
    SessionNotFoundError,
    SessionCorruptError,
    SessionValueError,
    SessionTypeError,
]
ALL = [SessionError, *SUBCLASSES]


def test_public_names_are_exported():
    for cls in ALL:
        assert getattr(pytest_sessionstate, cls.__name__) is cls


@pytest.mark.parametrize("cls", SUBCLASSES)
def test_subclasses_are_session_errors(cls):
    assert issubclass(cls, SessionError)
    assert issubclass(cls, Exception)


def test_not_found_is_a_lookup_error_and_value_error_a_value_error():
    assert issubclass(SessionNotFoundError, LookupError)
    assert issubclass(SessionValueError, ValueError)
    assert not issubclass(SessionLockError, (LookupError, ValueError))
    with pytest.raises(LookupError):
        raise SessionNotFoundError("gone")
    with pytest.raises(ValueError, match="bad"):
        raise SessionValueError("bad")


@pytest.mark.parametrize("cls", ALL)
def test_message_and_details(cls):
    err = cls("it broke", {"session_id": "s1", "timeout": 0.5})
    assert str(err) == "it broke"
    assert err.message == "it broke"
    assert err.details == {"session_id": "s1", "timeout": 0.5}
    assert cls.__name__ in repr(err)
    assert "s1" in repr(err)


@pytest.mark.parametrize("cls", ALL)
def test_details_default_to_an_empty_dict_of_its_own(cls):
    a, b = cls("a"), cls("b", None)
    assert a.details == {}
    assert b.details == {}
    a.details["x"] = 1
    assert b.details == {}


def test_details_are_copied_from_the_caller():
    given = {"k": 1}
    err = SessionError("m", given)
    given["k"] = 2
    assert err.details == {"k": 1}


@pytest.mark.parametrize("cls", ALL)
def test_pickle_round_trip_keeps_type_message_and_details(cls):
    err = cls("msg", {"session_id": "s", "timeout": 3.0, "nested": {"a": [1, 2]}})
    err.extra = "attr"
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert str(copy) == "msg"
    assert copy.details == err.details
    assert copy.extra == "attr"


def _raise_in_child(queue, cls_name):
    cls = getattr(pytest_sessionstate, cls_name)
    try:
        raise cls(f"from child {cls_name}", {"session_id": "child", "timeout": 1.5})
    except SessionError as exc:
        queue.put(exc)


@pytest.mark.parametrize("cls", ALL)
def test_errors_cross_process_boundaries(cls):
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_raise_in_child, args=(queue, cls.__name__))
    proc.start()
    try:
        received = queue.get(timeout=20)
    finally:
        proc.join(20)
    assert type(received) is cls
    assert str(received) == f"from child {cls.__name__}"
    assert received.details == {"session_id": "child", "timeout": 1.5}


@pytest.mark.parametrize(
    "make",
    [
        lambda: pytest_sessionstate.Settings(5),
        lambda: pytest_sessionstate.Settings(None),
        lambda: pytest_sessionstate.Settings("/tmp/x", lock_timeout="30"),
        lambda: pytest_sessionstate.Settings("/tmp/x", lock_timeout=True),
        lambda: pytest_sessionstate.Settings("/tmp/x", durable="yes"),
        lambda: pytest_sessionstate.StateManager(42),
        lambda: pytest_sessionstate.StateManager(b"s1"),
    ],
    ids=[
        "root-int",
        "root-none",
        "timeout-str",
        "timeout-bool",
        "durable-str",
        "id-int",
        "id-bytes",
    ],
)
def test_a_wrong_type_is_a_type_error_and_a_session_value_error(make):
    """One rule for the whole project: a wrong type is a TypeError, as the toolkit's
    are; in the core it is also the SessionValueError the contract promises."""
    with pytest.raises(pytest_sessionstate.SessionTypeError) as info:
        make()
    assert isinstance(info.value, TypeError)
    assert isinstance(info.value, pytest_sessionstate.SessionValueError)
    assert ", not " in str(info.value)
    copy = pickle.loads(pickle.dumps(info.value))
    assert type(copy) is pytest_sessionstate.SessionTypeError
    assert copy.details == info.value.details


@pytest.mark.parametrize(
    "make",
    [
        lambda: pytest_sessionstate.Settings(""),
        lambda: pytest_sessionstate.Settings("/tmp/x", lock_timeout=float("nan")),
        lambda: pytest_sessionstate.StateManager("../up"),
        lambda: pytest_sessionstate.StateManager(""),
    ],
    ids=["root-empty", "timeout-nan", "id-dotdot", "id-empty"],
)
def test_a_wrong_value_of_the_right_type_is_a_value_error_only(make):
    with pytest.raises(pytest_sessionstate.SessionValueError) as info:
        make()
    assert not isinstance(info.value, TypeError)
