"""A small async web-style service: a shop's carts, one session per customer.

This is what an asyncio server (FastAPI, aiohttp, an MCP server) built on
pytest-sessionstate looks like without the framework: one coroutine,
``handle``, takes a request (method, path, JSON body) and returns a response
(status, JSON body). Its state lives in sessions kept by ``AsyncStateManager``:
the lock belongs to the *task*, so two requests served at once by one event loop
never lose each other's update, and a wait for a busy session never blocks the
loop. ``tests/test_example_async.py`` is its test suite.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pytest_sessionstate import (
    AsyncStateManager,
    SessionLockError,
    SessionNotFoundError,
    SessionValueError,
    StateManager,
)

CART_FILE = "cart.json"


@dataclass(frozen=True)
class Response:
    """What ``handle`` returns: an HTTP status and a JSON body."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


async def handle(method: str, path: str, body: dict[str, Any] | None = None) -> Response:
    """Serve one request.

    Routes: ``GET /carts/<id>``, ``POST /carts/<id>/items`` (body ``{"item": name}``),
    ``POST /carts/<id>/checkout``, ``DELETE /carts/<id>``. Errors are answers, never
    exceptions: 400 for a bad session id or body, 404 for an unknown cart, 503
    when the session stays busy past the settings' lock timeout.
    """
    parts = path.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "carts":
        return Response(404, {"error": f"no route for {path!r}"})
    route = (method, *parts[2:])
    try:
        manager = AsyncStateManager(parts[1])
        if route == ("GET",):
            return Response(200, await manager.read_json(CART_FILE))
        if route == ("POST", "items"):
            return await add_item(manager, body or {})
        if route == ("POST", "checkout"):
            return await checkout(manager)
        if route == ("DELETE",):
            await manager.delete()
            return Response(204)
    except SessionValueError as exc:
        return Response(400, {"error": str(exc)})
    except SessionNotFoundError:
        return Response(404, {"error": f"no cart {parts[1]!r}"})
    except SessionLockError:
        return Response(503, {"error": "the cart is busy, try again"})
    return Response(405, {"error": f"{method} is not allowed on {path!r}"})


async def check_stock(item: str) -> bool:
    """Ask the (pretend) stock service: an await, so other requests run meanwhile."""
    await asyncio.sleep(0.001)
    return bool(item)


async def add_item(manager: AsyncStateManager, body: dict[str, Any]) -> Response:
    """Add one item: a read-modify-write that awaits in the middle, under the task's lock."""
    item = body.get("item")
    if not isinstance(item, str):
        return Response(400, {"error": "the body needs an 'item' string"})
    if not await check_stock(item):
        return Response(409, {"error": f"{item!r} is out of stock"})
    async with manager.transaction(CART_FILE, default={"items": [], "orders": []}) as cart:
        await asyncio.sleep(0)  # e.g. a price lookup: other requests run meanwhile
        cart["items"].append(item)
        return Response(201, {"items": list(cart["items"])})


async def checkout(manager: AsyncStateManager) -> Response:
    """Turn the cart's items into an order: one document, so all or nothing."""
    async with manager.transaction(CART_FILE) as cart:
        if not cart["items"]:
            return Response(409, {"error": "the cart is empty"})
        order = {"number": len(cart["orders"]) + 1, "items": cart["items"]}
        cart["orders"].append(order)
        cart["items"] = []
        return Response(200, order)


async def naive_add_item(session_id: str, item: str) -> None:
    """The sync API in a coroutine: two requests of one loop would share the thread's lock.

    ``StateManager.lock()`` belongs to the thread, and every task of a loop runs on
    the loop's thread. The state manager does not let a second task in silently:
    it raises a ``SessionLockError`` that names ``AsyncStateManager``.
    """
    manager = StateManager(session_id)
    with manager.lock():
        cart = manager.read_json(CART_FILE)
        await check_stock(item)
        cart["items"].append(item)
        manager.write_json(CART_FILE, cart)
