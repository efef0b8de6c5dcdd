"""The async cart service under test, with pytest-asyncio in *auto* mode.

Auto mode (``asyncio_mode = auto`` in pytest.ini) runs every coroutine test in an
event loop without a marker, and takes a plain ``@pytest.fixture`` on a coroutine
function as an async fixture. The plugin's fixtures need nothing either way.
"""

from __future__ import annotations

import asyncio

import async_app
import pytest

from pytest_sessionstate import AsyncStateManager, ContentionSimulator


@pytest.fixture
async def cart(session_root):
    response = await async_app.handle("POST", "/carts/c1/items", {"item": "tea"})
    assert response.status == 201
    return "c1"


async def test_an_item_added_is_in_the_cart(cart):
    await async_app.handle("POST", f"/carts/{cart}/items", {"item": "cups"})

    response = await async_app.handle("GET", f"/carts/{cart}")

    assert response.body == {"items": ["tea", "cups"], "orders": []}


async def test_requests_served_at_once_lose_no_item(cart):
    await asyncio.gather(
        *(async_app.handle("POST", f"/carts/{cart}/items", {"item": "jam"}) for _ in range(20))
    )

    document = await AsyncStateManager(cart).read_json(async_app.CART_FILE)
    assert document["items"] == ["tea"] + ["jam"] * 20


async def test_a_checkout_waits_for_another_process(contention: ContentionSimulator, cart):
    with contention.hold_lock(cart):
        checkout = asyncio.create_task(async_app.handle("POST", f"/carts/{cart}/checkout"))
        await asyncio.sleep(0.2)
        assert not checkout.done()  # waiting, without blocking this loop
    response = await asyncio.wait_for(checkout, timeout=30)  # the holder let go

    assert response.body == {"number": 1, "items": ["tea"]}
