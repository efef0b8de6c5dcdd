"""CrashInjector.fail_at: an OSError at each step of the write protocol.

Each point is passed right after its step happened: a failure before ``replaced``
leaves the old document, a failure from ``replaced`` on the new one.  Either way
the errno propagates, no temp file is left and the lock is free.
"""

from __future__ import annotations

import errno
import os
import threading

import pytest

from pytest_sessionstate import SessionLockError, Settings, StateManager, fsops, probes
from pytest_sessionstate.testing.crash import CrashInjector, InjectedFault

OLD = {"step": "old", "nested": {"n": 1}}
NEW = {"step": "new", "nested": {"n": 1}}
WRITE_POINTS = probes.WRITE_POINTS
NEW_FROM = WRITE_POINTS.index("replaced")


def temp_files(manager: StateManager) -> list[str]:
    if not manager.exists():
        return []
    return sorted(name for name in os.listdir(manager.session_dir) if fsops.is_temp_name(name))


def lock_is_free(manager: StateManager) -> bool:
    """Try lock(timeout=0) from another thread (this one could re-enter a leaked lock)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            with StateManager(manager.session_id, settings=manager.settings).lock(timeout=0):
                result.append(True)
        except SessionLockError:
            result.append(False)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    return result == [True]


@pytest.fixture
def manager(session_settings: Settings) -> StateManager:
    manager = StateManager("s1", settings=session_settings)
    manager.write_json("doc.json", OLD)
    return manager


def test_points_are_the_write_protocol_in_order(crash):
    assert crash.points == (
        "lock-acquired",
        "read",
        "temp-created",
        "temp-written",
        "temp-synced",
        "replaced",
        "dir-synced",
        "lock-released",
    )


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
@pytest.mark.parametrize("point", WRITE_POINTS)
def test_a_failure_at_each_point_leaves_old_or_new_and_no_temp(crash, manager, point, code):
    with crash.fail_at(point, errno=code) as fault, pytest.raises(OSError) as caught:
        manager.update_json("doc.json", {"step": "new"})

    assert caught.value.errno == code
    assert caught.value is fault.error
    assert fault.fired
    assert fault.event is not None
    assert fault.event.point == point
    expected = NEW if WRITE_POINTS.index(point) >= NEW_FROM else OLD
    assert manager.read_json("doc.json") == expected
    assert temp_files(manager) == []
    assert manager.list_files() == ["doc.json"]
    assert lock_is_free(manager)
    # And the next write goes through.
    assert manager.update_json("doc.json", {"after": True})["after"] is True


@pytest.mark.parametrize("point", [p for p in WRITE_POINTS if p != "read"])
def test_a_failed_first_write_of_a_file_leaves_no_file_or_the_new_one(
    crash, session_settings, point
):
    manager = StateManager("fresh", settings=session_settings)

    with crash.fail_at(point, errno=errno.ENOSPC), pytest.raises(OSError) as caught:
        manager.write_json("doc.json", NEW)

    assert caught.value.errno == errno.ENOSPC
    if WRITE_POINTS.index(point) >= NEW_FROM:
        assert manager.read_json("doc.json") == NEW
    else:
        # The failed first write of a new session leaves no (empty) session behind.
        assert not manager.exists()
    assert temp_files(manager) == []
    assert lock_is_free(manager)


def test_the_nth_pass_fails_and_only_that_one(crash, manager):
    with crash.fail_at("temp-written", errno=errno.ENOSPC, nth=2) as fault:
        manager.update_json("doc.json", {"count": 1})
        assert not fault.fired
        with pytest.raises(OSError) as caught:
            manager.update_json("doc.json", {"count": 2})
        manager.update_json("doc.json", {"count": 3})

    assert caught.value.errno == errno.ENOSPC
    assert fault.hits == 3
    assert manager.read_json("doc.json")["count"] == 3


def test_the_error_names_the_point_and_the_file(crash, manager):
    with crash.fail_at("temp-synced"), pytest.raises(OSError) as caught:
        manager.write_json("doc.json", NEW)

    assert caught.value.errno == errno.EIO
    assert "temp-synced" in str(caught.value)
    assert caught.value.filename == str(manager.session_dir / "doc.json")


def test_a_failed_delete_keeps_the_file_gone_and_reports_the_errno(crash, manager):
    with crash.fail_at("removed", errno=errno.EIO), pytest.raises(OSError) as caught:
        manager.delete("doc.json")

    assert caught.value.errno == errno.EIO
    assert manager.list_files() == []  # "removed" is passed after the unlink
    assert lock_is_free(manager)


def test_the_fault_is_uninstalled_after_the_block(crash, manager):
    with crash.fail_at("replaced"):
        pass
    manager.update_json("doc.json", {"step": "new"})

    assert manager.read_json("doc.json") == NEW
    assert probes.listeners == ()


def test_close_uninstalls_a_fault_left_open(session_settings, manager):
    injector = CrashInjector(session_settings)
    block = injector.fail_at("replaced")
    fault = block.__enter__()
    assert isinstance(fault, InjectedFault)

    injector.close()

    manager.update_json("doc.json", {"step": "new"})
    assert not fault.fired
    assert probes.listeners == ()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"point": "renamed"},
            ValueError,
            "point must be one of 'lock-acquired', .*, not 'renamed'",
        ),
        ({"point": ""}, ValueError, "point must be one of .*, not ''"),
        ({"point": 5}, TypeError, "point must be one of .*, not int"),
        ({"point": "read", "nth": 0}, ValueError, "nth must be an integer >= 1, not 0"),
        ({"point": "read", "nth": -3}, ValueError, "nth must be an integer >= 1, not -3"),
        ({"point": "read", "nth": 1.5}, TypeError, "nth must be an integer >= 1, not float"),
        ({"point": "read", "nth": True}, TypeError, "nth must be an integer >= 1, not bool"),
        ({"point": "read", "errno": 0}, ValueError, "errno must be an integer >= 1, not 0"),
        ({"point": "read", "errno": "EIO"}, TypeError, "errno must be an integer >= 1, not str"),
    ],
)
def test_bad_arguments_are_a_clear_type_or_value_error(crash, kwargs, error, message):
    with pytest.raises(error, match=message), crash.fail_at(**kwargs):
        pass  # pragma: no cover
    assert probes.listeners == ()


def test_the_injector_needs_settings():
    with pytest.raises(TypeError, match="Settings"):
        CrashInjector("/tmp/root")  # type: ignore[arg-type]
