"""The async cart service under test, with pytest-asyncio in *strict* mode.

Strict mode (pytest-asyncio's default) runs a coroutine test only if it is marked
``@pytest.mark.asyncio``, and an async fixture only if it is declared with
``@pytest_asyncio.fixture``. The plugin's fixtures are plain ones and work
unchanged in async tests: ``session_root`` points ``AsyncStateManager`` (without
``settings=``) at the test's fresh root, as it does ``StateManager``.
``async_auto/`` holds the same kind of tests in *auto* mode; the last test here
runs it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import async_app
import pytest
import pytest_asyncio

from pytest_sessionstate import (
    AsyncStateManager,
    ContentionSimulator,
    CrashInjector,
    MakeSession,
    SessionLockError,
)


@pytest_asyncio.fixture
async def cart(session_root: Path) -> str:
    """A cart with tea in it, made through the service itself (an async fixture)."""
    response = await async_app.handle("POST", "/carts/c1/items", {"item": "tea"})
    assert response.status == 201
    return "c1"


@pytest.mark.asyncio
async def test_an_item_added_is_in_the_cart(cart: str) -> None:
    await async_app.handle("POST", f"/carts/{cart}/items", {"item": "cups"})

    response = await async_app.handle("GET", f"/carts/{cart}")

    assert response == async_app.Response(200, {"items": ["tea", "cups"], "orders": []})


@pytest.mark.asyncio
async def test_a_cart_made_by_make_session_is_served(make_session: MakeSession) -> None:
    make_session("c2", {async_app.CART_FILE: {"items": ["jam"], "orders": []}})

    response = await async_app.handle("POST", "/carts/c2/checkout")

    assert response == async_app.Response(200, {"number": 1, "items": ["jam"]})
    assert (await async_app.handle("GET", "/carts/c2")).body == {
        "items": [],
        "orders": [{"number": 1, "items": ["jam"]}],
    }


@pytest.mark.asyncio
async def test_bad_requests_are_answers_not_exceptions(session_root: Path) -> None:
    assert (await async_app.handle("GET", "/carts/nobody")).status == 404
    assert (await async_app.handle("GET", "/carts/..")).status == 400  # a bad session id
    assert (await async_app.handle("POST", "/carts/c3/items", {"item": 5})).status == 400
    assert (await async_app.handle("PUT", "/carts/c3")).status == 405


# --- many requests at once --------------------------------------------------------------


@pytest.mark.asyncio
async def test_fifty_requests_served_at_once_lose_no_item(session_root: Path) -> None:
    items = [f"item-{n}" for n in range(50)]

    responses = await asyncio.gather(
        *(async_app.handle("POST", "/carts/c4/items", {"item": item}) for item in items)
    )

    assert {response.status for response in responses} == {201}
    cart = await AsyncStateManager("c4").read_json(async_app.CART_FILE)
    assert sorted(cart["items"]) == sorted(items)  # each request awaited mid-update


@pytest.mark.asyncio
async def test_the_sync_lock_refuses_a_second_task_of_the_loop(make_session: MakeSession) -> None:
    make_session("c5", {async_app.CART_FILE: {"items": [], "orders": []}})

    outcomes = await asyncio.gather(
        async_app.naive_add_item("c5", "tea"),
        async_app.naive_add_item("c5", "cups"),
        return_exceptions=True,
    )

    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(errors) == 1  # the second task is told, not let in
    assert isinstance(errors[0], SessionLockError)
    assert "AsyncStateManager" in str(errors[0])


def test_tasks_and_processes_at_once_lose_no_item(contention: ContentionSimulator) -> None:
    # A coroutine function as target: in mode="task" the 8 workers are tasks of one
    # event loop; in mode="process" each process runs it in an event loop of its own.
    add_tea = ("POST", "/carts/c6/items", {"item": "tea"})
    by_tasks = contention.run(async_app.handle, args=add_tea, workers=8, iterations=5, mode="task")
    by_processes = contention.run(async_app.handle, args=add_tea, workers=3, iterations=5)

    by_tasks.raise_errors()
    by_processes.raise_errors()
    assert {response.status for response in by_tasks.returns + by_processes.returns} == {201}
    cart = AsyncStateManager("c6").sync.read_json(async_app.CART_FILE)
    assert cart["items"] == ["tea"] * (40 + 15)


# --- a busy session -----------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.sessionstate(lock_timeout=0.2)
async def test_a_cart_busy_past_the_lock_timeout_answers_503(
    contention: ContentionSimulator, make_session: MakeSession
) -> None:
    busy = make_session("busy", {async_app.CART_FILE: {"items": ["tea"], "orders": []}})

    with contention.hold_lock(busy):  # another process holds the cart's lock
        response = await async_app.handle("POST", "/carts/busy/checkout")

    assert response.status == 503
    assert (await async_app.handle("GET", "/carts/busy")).body["items"] == ["tea"]


@pytest.mark.asyncio
async def test_other_carts_are_served_while_one_waits(
    contention: ContentionSimulator, make_session: MakeSession
) -> None:
    busy = make_session("busy", {async_app.CART_FILE: {"items": ["tea"], "orders": []}})
    make_session("free", {async_app.CART_FILE: {"items": ["jam"], "orders": []}})

    with contention.hold_lock(busy):
        waiting = asyncio.create_task(async_app.handle("POST", "/carts/busy/checkout"))
        served = await async_app.handle("GET", "/carts/free")
        assert served.status == 200
        assert not waiting.done()  # the loop served "free" while "busy" waited
    answered = await asyncio.wait_for(waiting, timeout=30)  # the holder let go

    assert answered == async_app.Response(200, {"number": 1, "items": ["tea"]})


# --- crashes --------------------------------------------------------------------------------


def every_item_is_in_the_cart_or_in_one_order(snapshot):
    for files in snapshot.values():
        cart = files[async_app.CART_FILE]
        ordered = [item for order in cart["orders"] for item in order["items"]]
        assert sorted(cart["items"] + ordered) == ["cups", "tea"], cart


@pytest.mark.parametrize("mode", ["kill", "error", "power-loss"])
def test_a_checkout_is_all_or_nothing(crash: CrashInjector, make_session, mode) -> None:
    # The target is a coroutine function: the injector runs it in an event loop.
    make_session("c7", {async_app.CART_FILE: {"items": ["tea", "cups"], "orders": []}})

    report = crash.explore(
        async_app.handle,
        args=("POST", "/carts/c7/checkout"),
        mode=mode,
        check=every_item_is_in_the_cart_or_in_one_order,
    )

    report.assert_ok()
    assert report.runs == report.hits + 1


# --- the same fixtures in auto mode ----------------------------------------------------------


def test_the_auto_mode_suite_passes() -> None:
    """Run ``async_auto/`` (its own pytest.ini: ``asyncio_mode = auto``) as a project would."""
    here = Path(__file__).parent.parent / "async_auto"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(here)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("3 passed"), result.stdout
