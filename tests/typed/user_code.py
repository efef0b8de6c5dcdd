"""A user's code and tests, typed: every public call and fixture annotation.

``tests/test_typed_api.py`` runs ``mypy --strict`` on this file; it must pass.
Nothing here is collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pytest_sessionstate import (
    AsyncStateManager,
    ContentionResult,
    ContentionSimulator,
    CrashInjector,
    CrashReport,
    JSONObject,
    MakeSession,
    SessionCorruptError,
    SessionError,
    SessionLockError,
    SessionNotFoundError,
    SessionRootFactory,
    SessionValueError,
    Settings,
    StateManager,
    Updates,
    current_settings,
    get_session_or_raise,
    list_sessions,
    use_settings,
)
from pytest_sessionstate.strategies import (
    documents,
    dot_path_updates,
    dot_paths,
    filenames,
    invalid_filenames,
    invalid_session_ids,
    json_values,
    session_ids,
)
from pytest_sessionstate.testing import (
    ContentionError,
    ContentionMode,
    Crash,
    CrashMode,
    InjectedFault,
    InterleaveResult,
    ProbePoint,
    Snapshot,
    TargetError,
    Violation,
    WorkerError,
)


def sync_api(root: Path) -> None:
    settings = Settings(root, lock_timeout=5.0, durable=False)
    manager = StateManager("s1", settings=settings)
    manager.write_json("session.json", {"workflow_progress": {"initialize": "pending"}})
    updates: dict[str, Any] = {"workflow_progress.initialize": "completed"}
    document: JSONObject = manager.update_json("session.json", updates)
    tuple_keyed: dict[tuple[str, ...], Any] = {("workflow_progress", "a.b"): 1}
    manager.update_json("session.json", tuple_keyed)
    mixed: Updates = {"x": 1, ("y", "z"): 2}
    manager.update_json("session.json", mixed)
    literal_updates = manager.update_json("session.json", {"count": document.get("count", 0)})
    assert isinstance(literal_updates, dict)
    with manager.lock(timeout=1):
        read: dict[str, Any] = manager.read_json("session.json")
        assert read
    with manager.transaction("cart.json", default={"items": []}) as cart:
        cart["items"].append("tea")
    present: bool = manager.exists("cart.json") and manager.exists()
    files: list[str] = manager.list_files()
    assert present and files
    manager.delete("cart.json")
    ids: list[str] = list_sessions(settings=settings)
    found: StateManager = get_session_or_raise("s1", settings=settings)
    assert ids and found.session_dir.is_dir() and found.lock_file.name
    with use_settings(settings):
        assert current_settings() is settings
    try:
        manager.delete()
    except (SessionCorruptError, SessionLockError, SessionNotFoundError, SessionValueError) as e:
        error: SessionError = e
        assert error.details is not None


async def async_api(root: Path) -> None:
    manager = AsyncStateManager("a1", settings=Settings(root, durable=False))
    await manager.write_json("cart.json", {"items": []})
    updates: dict[str, Any] = {"count": 1}
    document: JSONObject = await manager.update_json("cart.json", updates)
    async with manager.lock(timeout=2.5):
        read: dict[str, Any] = await manager.read_json("cart.json")
    async with manager.transaction("cart.json") as cart:
        cart["items"].append("tea")
    assert document and read and await manager.exists() and await manager.list_files()
    await manager.delete()


def test_fixtures(
    session_root: Path,
    session_settings: Settings,
    make_session: MakeSession,
    session_root_factory: SessionRootFactory,
    shared_session_root: Path,
    contention: ContentionSimulator,
    crash: CrashInjector,
) -> None:
    made: StateManager = make_session("cart", {"cart.json": {"items": []}})
    with session_root_factory(durable=False) as fresh:
        other_root: Path = fresh.root
    assert made and other_root and shared_session_root and session_settings.root == session_root
    asyncio.run(async_api(session_root))


def count(session_id: str) -> int:
    with StateManager(session_id).transaction("n.json", default={"n": 0}) as document:
        document["n"] += 1
        n: int = document["n"]
    return n


async def count_async(session_id: str) -> int:
    async with AsyncStateManager(session_id).transaction("n.json", default={"n": 0}) as doc:
        doc["n"] += 1
        n: int = doc["n"]
    return n


def test_contention(contention: ContentionSimulator) -> None:
    mode: ContentionMode = "thread"
    result: ContentionResult[int] = contention.run(count, args=("s",), workers=2, mode=mode)
    from_tasks: ContentionResult[int] = contention.run(count_async, args=("s",), mode="task")
    total: int = sum(result.returns) + sum(from_tasks.returns)
    errors: list[WorkerError] = result.errors
    try:
        result.raise_errors()
    except ContentionError as error:
        assert error
    point: ProbePoint = "read"
    race: InterleaveResult = contention.interleave(count, count, pause_at=point, args=("s",))
    with contention.hold_lock("s") as holder:
        assert holder.pid
    assert total and not errors and race.values


def snapshot_check(snapshot: Snapshot) -> None:
    for files in snapshot.values():
        assert all(isinstance(document, dict) for document in files.values())


def test_crash(crash: CrashInjector) -> None:
    mode: CrashMode = "power-loss"
    report: CrashReport = crash.explore(count, args=("s",), mode=mode, check=snapshot_check)
    report.assert_ok()
    crashes: list[Crash] = report.crashes
    violations: list[Violation] = report.violations
    assert crashes and not violations
    with crash.fail_at("replaced", nth=1) as fault:
        injected: InjectedFault = fault
        assert injected
    errors: list[TargetError] = report.errors
    assert not errors


@given(
    session_id=session_ids(),
    filename=filenames(),
    value=json_values(),
    document=documents(),
    path=dot_paths(),
    bad_id=invalid_session_ids(),
    bad_name=invalid_filenames(),
    data=st.data(),
)
def test_strategies(
    session_id: str,
    filename: str,
    value: Any,
    document: dict[str, Any],
    path: str,
    bad_id: Any,
    bad_name: Any,
    data: st.DataObject,
) -> None:
    drawn = data.draw(dot_path_updates(document))
    assert session_id and filename and path and isinstance(drawn, dict)
