"""Top-level conftest: the plugin is tested the pytest way, with pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _inner_runs_set_the_asyncio_loop_scope(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Give pytester's inner runs the loop scope that pytest-asyncio asks every project for.

    pytest-asyncio (a test extra, so that the async examples run) warns at start-up in any
    project that leaves ``asyncio_default_fixture_loop_scope`` unset. The inner runs are
    projects of their own, without this repository's configuration; pytester clears
    ``PYTEST_ADDOPTS`` when it starts, so the option is set again after it.
    """
    if "pytester" not in request.fixturenames:
        return
    request.getfixturevalue("pytester")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")
