"""The toolkit's own waits run on a real clock: a user's freeze_time cannot stop them."""

from __future__ import annotations

import time

import pytest
from freezegun import freeze_time

from pytest_sessionstate import (
    ContentionSimulator,
    CrashInjector,
    SessionLockError,
    StateManager,
)

pytestmark = pytest.mark.timeout(60)


def _bump() -> None:
    StateManager("s").update_json("a.json", {"n": 1})


def test_crash_explore_completes_under_freeze_time(crash: CrashInjector, make_session):
    make_session("s", files={"a.json": {"n": 0}})
    with freeze_time("2020-01-01"):
        report = crash.explore(_bump, mode="kill")
    report.assert_ok()
    assert report.runs == len(report.crashes) + 1 == 9


def test_contention_timeout_expires_under_freeze_time(contention: ContentionSimulator):
    with freeze_time("2020-01-01"):
        result = contention.run(time.sleep, args=(30,), workers=2, timeout=0.5)
    assert not result.ok
    assert len(result.errors) == 2


def test_hold_lock_under_freeze_time(contention: ContentionSimulator, make_session):
    session = make_session("s", files={"a.json": {"n": 0}})
    with (
        freeze_time("2020-01-01"),
        contention.hold_lock(session),
        pytest.raises(SessionLockError),
        session.lock(timeout=0.2),
    ):
        pass
    with session.lock(timeout=0):
        pass
