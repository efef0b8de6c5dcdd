"""A Hypothesis state machine that checks a real StateManager against a pure model.

:class:`SessionStateMachine` drives one session in a temporary root of its own
through random sequences of writes, dot-path updates, transactions (also ones
that raise), deletes, reads, locks (also re-entrant ones) and writes that fail
mid-way at a probe point, and after every step checks that the disk holds
exactly what the model (a dict of documents updated with
:func:`pytest_sessionstate.dotpath.apply_updates`) says.

Run it as it is::

    from pytest_sessionstate.stateful import SessionStateMachine

    TestSessions = SessionStateMachine.TestCase

or subclass it to add rules for your own code, or to plant a bug through the
hooks :meth:`~SessionStateMachine.make_manager` and
:meth:`~SessionStateMachine.apply_model_updates`.

This module imports Hypothesis; ``import pytest_sessionstate`` and the pytest
plugin never import it.
"""

from __future__ import annotations

import copy
import errno
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from . import dotpath
from .config import Settings
from .errors import SessionNotFoundError, SessionValueError
from .fsops import is_temp_name
from .names import validate_name
from .probes import WRITE_POINTS, WritePoint
from .state import LOCK_FILENAME, StateManager
from .strategies import documents, dot_path_updates, dot_paths
from .strategies import filenames as any_filename
from .testing.crash import CrashInjector
from .testing.crashcheck import why_lock_is_held
from .testing.roots import announce_root

__all__ = ["FILENAMES", "SessionStateMachine"]

JSONObject = dict[str, Any]

#: The default of :attr:`SessionStateMachine.filenames`: few, so that steps meet
#: the same files again (a read after a write, an update after a delete...).
FILENAMES: tuple[str, ...] = ("session.json", "data.json", "notes")

#: Probe points at or after which a write that fails has already replaced the file.
_AFTER_REPLACE = frozenset(WRITE_POINTS[WRITE_POINTS.index("replaced") :])

# Drawn from the running machine's ``filenames``, so a subclass's files are used.
_files = st.runner().flatmap(lambda machine: st.sampled_from(machine.filenames))
_optional_documents = st.one_of(st.none(), documents())


#: A key the transaction that raises adds before raising: never on disk.
_RAISED = "written by a transaction that raised"


class _PlannedError(Exception):
    """Raised inside a transaction by the rule that checks nothing is written."""


class SessionStateMachine(RuleBasedStateMachine):
    """Random operations on one real session, checked after each step against a model.

    Each run gets a fresh root (``tempfile.mkdtemp``) with non-durable settings
    (fsync adds nothing to what a single process can observe, and costs time),
    removed in :meth:`teardown`.

    Attributes a subclass can use in its own rules:

    :ivar settings: the :class:`~pytest_sessionstate.Settings` of the run's root.
        Code under test that makes its own ``StateManager(session_id)`` needs them
        in force: ``with use_settings(self.settings): ...``.
    :ivar manager: the :class:`~pytest_sessionstate.StateManager` under test
        (from :meth:`make_manager`).
    :ivar model: filename -> the document the file must hold.  A rule that
        changes the session through other code updates it too.

    Bounded runs for CI: put ``@settings(max_examples=25, stateful_step_count=20,
    deadline=None)`` on a subclass (``TestSessions = Sub.TestCase``).  Do not
    assign to ``SessionStateMachine.TestCase.settings``: Hypothesis makes one
    ``TestCase`` per class, so that would change the settings of everyone who
    runs this class in the process.  Keep ``deadline=None``: file system calls on
    a busy machine do not keep to Hypothesis's 200 ms.

    The rules draw filenames from :attr:`filenames`; set it on a subclass to the
    files your code works on, so the base rules (writes of random documents,
    deletes, failed writes) hit those files between your rules.  Hypothesis picks
    among the rules whose preconditions hold with equal chances: to run your
    rules more often, bind the same rule under more names (``checkout_again =
    checkout``) or drop base rules you do not need (``read_elsewhere = None``).
    See ``docs/strategies.rst``.

    Under pytest, the report of a failing test shows what the last run's root
    held at its teardown (section ``sessionstate``): after a failure, the state of
    the shrunk, failing run.
    """

    #: The id of the session the machine drives.
    session_id: ClassVar[str] = "machine"
    #: The filenames the rules work on: few, so steps meet the same files again.
    #: Set it on a subclass to your code's files (valid filenames, at least one).
    filenames: ClassVar[tuple[str, ...]] = FILENAMES

    def __init__(self) -> None:
        super().__init__()
        names = type(self).filenames
        if isinstance(names, str) or not isinstance(names, (tuple, list)) or not names:
            raise TypeError(
                f"{type(self).__name__}.filenames must be a non-empty tuple of filenames, "
                f"not {names!r}"
            )
        for name in names:
            validate_name(name, "filename")
        self.root = Path(tempfile.mkdtemp(prefix="sessionstate-machine-"))
        self.settings: Settings = Settings(self.root, durable=False, lock_timeout=10.0)
        self.manager: StateManager = self.make_manager()
        self.model: dict[str, JSONObject] = {}

    def teardown(self) -> None:
        """Remove the run's root (under the pytest plugin, after recording what it
        holds for the report of a failing test)."""
        announce_root(self.root, "SessionStateMachine")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- hooks --------------------------------------------------------------------------

    def make_manager(self) -> StateManager:
        """Make a StateManager of the machine's session: the system under test.

        Called once in ``__init__`` and again by the rules that reach the
        session through a second instance.  Override it to test a subclass or a
        wrapper of :class:`~pytest_sessionstate.StateManager`.
        """
        return StateManager(self.session_id, settings=self.settings)

    def apply_model_updates(
        self, document: Mapping[str, Any], updates: Mapping[dotpath.Path, Any]
    ) -> JSONObject:
        """What ``update_json(filename, updates)`` must turn ``document`` into: the model.

        :func:`pytest_sessionstate.dotpath.apply_updates` unless overridden.
        """
        return dotpath.apply_updates(document, updates)

    # -- helpers ------------------------------------------------------------------------

    def _expect_missing(self, filename: str) -> None:
        try:
            found = self.manager.read_json(filename)
        except SessionNotFoundError:
            return
        raise AssertionError(f"{filename!r} should not exist, but holds {found!r}")

    def _lock_is_free(self) -> bool:
        """Whether another thread can take the session's lock at once."""
        return why_lock_is_held(self.make_manager()) is None

    # -- rules --------------------------------------------------------------------------

    @rule(filename=_files, document=documents())
    def write(self, filename: str, document: JSONObject) -> None:
        """``write_json`` replaces the file with the document."""
        self.manager.write_json(filename, document)
        self.model[filename] = copy.deepcopy(document)

    @rule(filename=_files, data=st.data())
    def update(self, filename: str, data: st.DataObject) -> None:
        """``update_json`` applies conflict-free dot-path updates and returns the result."""
        old = self.model.get(filename)
        updates = data.draw(dot_path_updates(old), label="updates")
        if old is None:
            try:
                self.manager.update_json(filename, updates)
            except SessionNotFoundError:
                return
            raise AssertionError(f"update_json of missing {filename!r} did not raise")
        expected = self.apply_model_updates(old, updates)
        result = self.manager.update_json(filename, updates)
        assert result == expected, f"update_json returned {result!r}, expected {expected!r}"
        self.model[filename] = expected

    @precondition(lambda self: any(_leaves(document) for document in self.model.values()))
    @rule(data=st.data())
    def update_through_a_value(self, data: st.DataObject) -> None:
        """An update whose path runs through a value that is not an object is refused."""
        filename = data.draw(
            st.sampled_from(sorted(f for f, d in self.model.items() if _leaves(d))),
            label="filename",
        )
        leaf = data.draw(st.sampled_from(_leaves(self.model[filename])), label="leaf")
        below = dotpath.split(data.draw(dot_paths(max_depth=2), label="below"))
        try:
            self.manager.update_json(filename, {(*leaf, *below): "unreachable"})
        except SessionValueError:
            return  # the invariants check that the file is unchanged
        raise AssertionError(f"update through the value at {leaf!r} did not raise")

    @rule(filename=_files, default=_optional_documents, fail=st.booleans(), data=st.data())
    def transaction(
        self, filename: str, default: JSONObject | None, fail: bool, data: st.DataObject
    ) -> None:
        """``transaction`` writes the changed dict on normal exit, nothing on an exception."""
        start = self.model.get(filename, default)
        if start is None:
            try:
                with self.manager.transaction(filename):
                    pass
            except SessionNotFoundError:
                return
            raise AssertionError(f"transaction on missing {filename!r} did not raise")
        updates = data.draw(dot_path_updates(start), label="updates")
        expected = self.apply_model_updates(start, updates)
        try:
            with self.manager.transaction(filename, default=default) as document:
                assert document == start, f"transaction began with {document!r}, not {start!r}"
                changed = dotpath.apply_updates(document, updates)
                document.clear()
                document.update(changed)
                if fail:
                    # A change that would show on disk if the block were written.
                    document[_RAISED] = True
                    raise _PlannedError
        except _PlannedError:
            return  # nothing written: the invariants check the file is as before
        self.model[filename] = expected

    @rule(filename=_files)
    def delete(self, filename: str) -> None:
        """``delete`` removes one file; a missing one raises SessionNotFoundError."""
        if filename in self.model:
            self.manager.delete(filename)
            del self.model[filename]
            return
        try:
            self.manager.delete(filename)
        except SessionNotFoundError:
            return
        raise AssertionError(f"delete of missing {filename!r} did not raise")

    # Only with files to lose: Hypothesis picks argument-less rules often, and
    # wiping an empty session again and again would keep the runs shallow.
    @precondition(lambda self: bool(self.model))
    @rule()
    def delete_session(self) -> None:
        """``delete()`` removes the whole session; then nothing is found, and a
        second ``delete()`` raises SessionNotFoundError."""
        self.manager.delete()
        self.model.clear()
        assert not self.manager.exists()
        try:
            self.manager.delete()
        except SessionNotFoundError:
            return
        raise AssertionError("delete() of a deleted session did not raise")

    @rule(filename=_files)
    def read(self, filename: str) -> None:
        """``read_json`` and ``exists`` agree with the model; a missing file is not found."""
        assert self.manager.exists(filename) == (filename in self.model)
        if filename in self.model:
            assert self.manager.read_json(filename) == self.model[filename]
        else:
            self._expect_missing(filename)

    @rule(filename=any_filename())
    def read_elsewhere(self, filename: str) -> None:
        """A valid filename the machine never wrote is not found."""
        if filename not in self.model:
            self._expect_missing(filename)

    @rule()
    def list_files(self) -> None:
        """``list_files`` is exactly the model's files, sorted."""
        assert self.manager.list_files() == sorted(self.model)

    @rule(filename=_files, document=documents(), data=st.data())
    def reentrant_lock(self, filename: str, document: JSONObject, data: st.DataObject) -> None:
        """Under ``lock()`` the same thread may lock again, through another instance,
        and update or write (which lock once more) without waiting."""
        other = self.make_manager()
        with self.manager.lock(timeout=0), other.lock(timeout=0):
            if filename in self.model:
                updates = data.draw(dot_path_updates(self.model[filename]), label="updates")
                expected = self.apply_model_updates(self.model[filename], updates)
                assert other.update_json(filename, updates) == expected
                self.model[filename] = expected
            else:
                other.write_json(filename, document)
                self.model[filename] = copy.deepcopy(document)
            assert not self._lock_is_free(), "another thread took a lock that is held"
        assert self._lock_is_free(), "the lock is still held after the block"

    @rule(
        filename=_files,
        point=st.sampled_from(WRITE_POINTS),
        document=documents(),
        data=st.data(),
    )
    def fail_mid_write(
        self, filename: str, point: WritePoint, document: JSONObject, data: st.DataObject
    ) -> None:
        """A write or update that fails with EIO at a probe point leaves the old
        document (before ``replaced``) or the new one (from ``replaced`` on), no
        temp file, and a free lock."""
        old = self.model.get(filename)
        new: JSONObject
        if old is not None and data.draw(st.booleans(), label="update"):
            updates = data.draw(dot_path_updates(old), label="updates")
            new = self.apply_model_updates(old, updates)

            def operation() -> object:
                return self.manager.update_json(filename, updates)
        else:
            new = copy.deepcopy(document)

            def operation() -> object:
                self.manager.write_json(filename, document)
                return None

        injector = CrashInjector(self.settings)
        failure: OSError | None = None
        try:
            with injector.fail_at(point, errno=errno.EIO):
                operation()
        except OSError as error:
            failure = error
        finally:
            injector.close()
        # No failure: the operation does not pass this point (``read`` for a write,
        # the fsync points when not durable).
        assert failure is None or failure.errno == errno.EIO, f"{failure!r} is not the EIO"
        if failure is not None and point not in _AFTER_REPLACE:
            if old is None:
                self._expect_missing(filename)
            else:
                self.model[filename] = old
        else:
            self.model[filename] = new
        assert self._lock_is_free(), f"the lock is held after a failure at {point!r}"

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def disk_matches_model(self) -> None:
        """Every file holds its model document, and there is no other file."""
        assert self.manager.list_files() == sorted(self.model)
        for filename, document in self.model.items():
            assert self.manager.read_json(filename) == document, f"{filename!r} differs"

    @invariant()
    def no_temp_files(self) -> None:
        """No temp file of the write protocol is left, and nothing but files and the lock."""
        try:
            names = os.listdir(self.manager.session_dir)
        except FileNotFoundError:
            return
        temps = [name for name in names if is_temp_name(name)]
        assert not temps, f"temp files left behind: {temps}"
        assert set(names) <= {*self.model, LOCK_FILENAME}, f"unexpected entries: {names}"


def _leaves(document: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Paths to the values of ``document`` that are not objects (keys non-empty)."""
    found: list[tuple[str, ...]] = []
    stack: list[tuple[tuple[str, ...], Mapping[str, Any]]] = [((), document)]
    while stack:
        prefix, node = stack.pop()
        for key, value in node.items():
            if not key:
                continue
            if isinstance(value, dict):
                stack.append(((*prefix, key), value))
            else:
                found.append((*prefix, key))
    return sorted(found)
