"""Temporary session roots for tests: the objects behind ``make_session`` and
``session_root_factory``, and the log of roots a test touched.

The pytest fixtures hand out these objects, so a test can annotate its
arguments with them::

    from pytest_sessionstate import MakeSession, SessionRootFactory

    def test_resume(make_session: MakeSession) -> None: ...

Nothing here waits or reads a clock, so freezegun's ``freeze_time`` in a test
cannot stall it.
"""

from __future__ import annotations

import itertools
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .. import codec
from ..config import Settings, use_settings
from ..names import validate_name
from ..state import StateManager

__all__ = ["MakeSession", "RootLog", "SessionRootFactory", "announce_root", "root_listener"]

#: Set by the pytest plugin while a test runs (None otherwise): called with
#: ``(label, text)`` by :func:`announce_root` for a root the toolkit made on its
#: own and is about to remove, ``text`` being what the root holds, rendered for
#: the report of a failing test.
root_listener: Callable[[str, str], None] | None = None


def announce_root(root: Path, label: str) -> None:
    """Record what ``root`` holds for the running test's report, before its removal.

    Used by :class:`~pytest_sessionstate.stateful.SessionStateMachine`, whose
    roots are gone by the time a report is made.  Does nothing (and costs nothing)
    outside pytest.
    """
    listener = root_listener
    if listener is None:
        return
    from .report import render

    listener(label, render([(root, label)]))


class RootLog:
    """The session roots one test touched, in the order it touched them.

    The plugin keeps one per test; when the test fails, the failure report
    (:mod:`pytest_sessionstate.testing.report`) shows what each root holds.
    A root is logged once, under the label it was first logged with.
    """

    __slots__ = ("_roots",)

    def __init__(self) -> None:
        self._roots: dict[Path, str] = {}

    def add(self, root: Path, label: str) -> None:
        """Log ``root``, described by ``label`` (for example ``"session_root"``)."""
        self._roots.setdefault(Path(root), label)

    def items(self) -> list[tuple[Path, str]]:
        """``(root, label)`` pairs in the order the roots were logged."""
        return list(self._roots.items())

    def __len__(self) -> int:
        return len(self._roots)

    def __bool__(self) -> bool:
        return bool(self._roots)


def _unique_session_id() -> str:
    # Random, not a counter: ids made by different tests or xdist workers in one
    # shared root never collide.
    return f"session-{uuid.uuid4().hex[:12]}"


class MakeSession:
    """Make sessions for a test: the object the ``make_session`` fixture gives.

    ``make_session(session_id=None, files=None)`` creates the session (its
    directory exists afterwards, even with no files), writes each of ``files``
    (filename -> initial JSON document) and returns its
    :class:`~pytest_sessionstate.StateManager`.

    :param settings: where sessions are made unless a call passes ``settings=``
        (the fixture passes the test's settings, rooted at ``session_root``).
    :param on_root: called with the root of every session made, so the plugin can
        report it when the test fails.
    """

    __slots__ = ("_on_root", "sessions", "settings")

    def __init__(
        self, settings: Settings, *, on_root: Callable[[Path], None] | None = None
    ) -> None:
        if not isinstance(settings, Settings):
            raise TypeError(f"settings must be a Settings, not {type(settings).__name__}")
        #: The settings sessions are made with by default.
        self.settings: Settings = settings
        #: Every session made so far, in order.
        self.sessions: list[StateManager] = []
        self._on_root = on_root

    def __call__(
        self,
        session_id: str | None = None,
        files: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        settings: Settings | None = None,
    ) -> StateManager:
        """Create a session and its initial files; return its StateManager.

        :param session_id: the session's id; None for a fresh unique one
            (``session-`` followed by 12 hex digits).
        :param files: filename -> initial document.  A session that exists
            already keeps its other files; the ones named here are overwritten.
        :param settings: make the session under these settings instead of the
            test's (for example ``Settings(shared_session_root)``).
        :raises SessionValueError: for an invalid id or filename, or a document that
            is not JSON; every name and document is checked before anything is
            written, so bad input leaves nothing behind.
        :raises TypeError: if ``files`` is not a mapping of mappings.
        """
        target = self.settings if settings is None else settings
        if not isinstance(target, Settings):
            raise TypeError(f"settings must be a Settings, not {type(target).__name__}")
        if session_id is None:
            session_id = _unique_session_id()
        manager = StateManager(session_id, settings=target)  # validates the id
        encoded: list[tuple[str, dict[str, Any]]] = []
        if files is not None:
            if not isinstance(files, Mapping):
                raise TypeError(
                    f"files must map filenames to documents, not {type(files).__name__}"
                )
            for filename, document in files.items():
                validate_name(filename, "filename")
                if not isinstance(document, Mapping):
                    raise TypeError(
                        f"the initial document of {filename!r} must be a mapping, "
                        f"not {type(document).__name__}"
                    )
                plain = dict(document)
                codec.encode(plain)  # raises SessionValueError naming the bad path
                encoded.append((filename, plain))
        if self._on_root is not None:
            self._on_root(target.root)
        with manager.lock():  # creates the session directory
            for filename, document in encoded:
                manager.write_json(filename, document)
        self.sessions.append(manager)
        return manager

    def __repr__(self) -> str:
        return f"<MakeSession root={str(self.settings.root)!r} made={len(self.sessions)}>"


class SessionRootFactory:
    """Fresh session roots on demand: the object ``session_root_factory`` gives.

    ``with session_root_factory() as s:`` makes a new, empty directory under
    ``base``, makes ``s = Settings(that directory, ...)`` the settings in force
    for the block (:func:`~pytest_sessionstate.use_settings`) and yields it.
    It is meant for Hypothesis ``@given`` tests, which must not use
    function-scoped fixtures: the factory lives for the whole session and
    each example asks it for its own root.

    Roots whose block has ended are removed when the next root is made, so a
    long Hypothesis run leaves one example's roots behind (the last, which on
    failure is the failing one), not thousands.

    :param base: the directory the roots are made in.
    :param defaults: the settings whose ``lock_timeout`` and ``durable`` a new
        root starts from, or a callable returning them at each call (the plugin
        passes one that applies the ini options and the running test's
        ``sessionstate`` marker); by default ``Settings``'s own defaults.
    :param on_root: called with each new root (the plugin logs it for the
        failure report of the running test).
    """

    __slots__ = ("_counter", "_defaults", "_finished", "_on_root", "base", "roots")

    def __init__(
        self,
        base: Path,
        *,
        defaults: Settings | Callable[[], Settings] | None = None,
        on_root: Callable[[Path], None] | None = None,
    ) -> None:
        #: The directory roots are made in.
        self.base: Path = Path(base)
        #: Every root made so far (removed ones included), in order.
        self.roots: list[Path] = []
        self._defaults = defaults
        self._on_root = on_root
        self._counter = itertools.count()
        self._finished: list[Path] = []

    def _template(self) -> Settings:
        defaults = self._defaults
        if defaults is None:
            return Settings(self.base)
        if isinstance(defaults, Settings):
            return defaults
        return defaults()

    def _new_root(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        while True:
            root = self.base / f"root-{next(self._counter)}"
            try:
                root.mkdir()
            except FileExistsError:
                continue
            return root

    def _remove_finished(self) -> None:
        finished, self._finished = self._finished, []
        for root in finished:
            shutil.rmtree(root, ignore_errors=True)

    @contextmanager
    def __call__(
        self, *, lock_timeout: float | None = None, durable: bool | None = None
    ) -> Iterator[Settings]:
        """Make a fresh, empty root and make it the settings in force for the block.

        :param lock_timeout: overrides the default lock timeout for this root.
        :param durable: overrides the default durability for this root.
        :raises SessionValueError: if an override has the wrong type.
        """
        template = self._template()
        self._remove_finished()
        root = self._new_root()
        try:
            new = template.replace(root=root, lock_timeout=lock_timeout, durable=durable)
        except BaseException:
            root.rmdir()
            raise
        self.roots.append(root)
        if self._on_root is not None:
            self._on_root(root)
        try:
            with use_settings(new):
                yield new
        finally:
            self._finished.append(root)

    def __repr__(self) -> str:
        return f"<SessionRootFactory base={str(self.base)!r} made={len(self.roots)}>"
