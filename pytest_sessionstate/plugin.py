"""The pytest plugin (entry point ``sessionstate``): fixtures, marker, ini options.

Imported by every pytest run in an environment where the package is installed,
so it stays cheap: it imports neither Hypothesis nor freezegun, and the toolkit
modules are imported inside the fixtures that use them.

SKELETON: the plugin issue (#4) fills in the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .settings import Settings, use_settings

if TYPE_CHECKING:
    from .testing.contention import ContentionSimulator
    from .testing.crash import CrashInjector


@pytest.fixture
def session_root(tmp_path: Path) -> Iterator[Path]:
    """A fresh, empty session root, made the default settings for the test."""
    root = tmp_path / "sessions"
    root.mkdir()
    with use_settings(Settings(root, durable=True)):
        yield root


@pytest.fixture
def session_settings(session_root: Path) -> Settings:
    """The :class:`~pytest_sessionstate.Settings` in force for the test."""
    from .settings import current_settings

    return current_settings()


@pytest.fixture
def contention(session_settings: Settings) -> Iterator[ContentionSimulator]:
    """A :class:`~pytest_sessionstate.ContentionSimulator` bound to the test's settings."""
    from .testing.contention import ContentionSimulator

    simulator = ContentionSimulator(session_settings)
    try:
        yield simulator
    finally:
        simulator.close()


@pytest.fixture
def crash(session_settings: Settings) -> Iterator[CrashInjector]:
    """A :class:`~pytest_sessionstate.CrashInjector` bound to the test's settings."""
    from .testing.crash import CrashInjector

    injector = CrashInjector(session_settings)
    try:
        yield injector
    finally:
        injector.close()
