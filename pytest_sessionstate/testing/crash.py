"""The crash injector: fail, kill or power-cut code at every step of every write.

:class:`CrashInjector` is what the ``crash`` fixture gives.  Two tools:

* :meth:`CrashInjector.fail_at`: make one operation fail with an ``OSError``
  (ENOSPC, EIO...) at a chosen probe point: an error test.
* :meth:`CrashInjector.explore`: SQLite's crash loop.  Run ``k`` (k = 1, 2, ...)
  restores the session root to its state before the first run, runs the target
  and crashes it at its k-th probe hit, then checks what is left on disk; the
  loop ends with the first run that completes untouched, so a target with N
  probe hits is explored in N + 1 runs.  The crash is a SIGKILL of a forked child
  (``"kill"``), an injected ``OSError`` (``"error"``), or a SIGKILL followed by
  every disk state a power cut may leave (``"power-loss"``, see
  :mod:`pytest_sessionstate.testing.powerloss`).  The checks are those of
  :mod:`pytest_sessionstate.testing.crashcheck`.
"""

from __future__ import annotations

import errno as errno_module
import inspect
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, get_args

from .. import probes
from ..config import Settings
from ..probes import PROBE_POINTS, WRITE_POINTS, ProbeEvent, ProbePoint
from . import checks, crashlog
from .allornothing import check_all_or_nothing
from .crashcheck import Check, StateChecker
from .crashresults import Crash, CrashReport, TargetError, Violation
from .powerloss import power_cut_states
from .snapshot import Tree, restore, take_snapshot

if TYPE_CHECKING:
    from .filecrash import FileState

__all__ = [
    "CRASH_MODES",
    "MODES",
    "Crash",
    "CrashMode",
    "CrashInjector",
    "CrashReport",
    "InjectedFault",
    "TargetError",
    "Violation",
]

#: The type of :meth:`CrashInjector.explore`'s ``mode``: how a run is crashed.
CrashMode = Literal["kill", "error", "power-loss"]

#: The crash modes of :meth:`CrashInjector.explore`: how a run is crashed.
CRASH_MODES: tuple[CrashMode, ...] = get_args(CrashMode)
#: The same, under its earlier name (one name per meaning: contention modes are
#: ``contention.CONTENTION_MODES``).
MODES = CRASH_MODES


class InjectedFault:
    """What :meth:`CrashInjector.fail_at` yields: whether (and where) it fired.

    :ivar point: the probe point.
    :ivar errno: the error number raised.
    :ivar nth: which pass of the point fails.
    :ivar hits: how many times the point was passed so far.
    :ivar event: the event at which it fired (None until it does).
    :ivar error: the ``OSError`` raised (None until it fires).
    """

    def __init__(self, point: str, errno: int, nth: int) -> None:
        self.point = point
        self.errno = errno
        self.nth = nth
        self.hits = 0
        self.event: ProbeEvent | None = None
        self.error: OSError | None = None
        self._lock = threading.Lock()

    @property
    def fired(self) -> bool:
        """Whether the operation was made to fail."""
        return self.error is not None

    def __call__(self, event: ProbeEvent) -> None:
        if event.point != self.point:
            return
        with self._lock:
            self.hits += 1
            if self.hits != self.nth:
                return
            self.event = event
            self.error = crashlog.injected_error(self.errno, event)
        raise self.error

    def __repr__(self) -> str:
        return (
            f"InjectedFault(point={self.point!r}, errno={self.errno}, nth={self.nth}, "
            f"hits={self.hits}, fired={self.fired})"
        )


class CrashInjector:
    """Crash code that keeps session state, at every step of every write.

    :param settings: the settings the target runs under (the exploration
        restores and checks ``settings.root``; ``durable`` decides what a power
        cut may lose).  The ``crash`` fixture passes the test's settings.
    :raises TypeError: if ``settings`` is not a :class:`~pytest_sessionstate.Settings`.
    """

    #: The probe point names of the write protocol, in the order one write passes them.
    points: tuple[str, ...] = WRITE_POINTS

    def __init__(self, settings: Settings) -> None:
        if not isinstance(settings, Settings):
            raise TypeError(f"CrashInjector takes a Settings, not {type(settings).__name__}")
        self.settings = settings
        self._installed: list[InjectedFault] = []
        #: Every report :meth:`explore` made, in order (the plugin shows the state
        #: behind the first violation in a failing test's report).
        self.reports: list[CrashReport] = []
        self._crash_states: list[tuple[Violation, dict[str, dict[str, Any]]]] | None = None

    def __repr__(self) -> str:
        return f"CrashInjector({self.settings!r})"

    @contextmanager
    def fail_at(
        self, point: ProbePoint, *, errno: int = errno_module.EIO, nth: int = 1
    ) -> Iterator[InjectedFault]:
        """Make the ``nth`` pass of ``point`` in this process fail with ``OSError(errno)``.

        The operation at that point raises; the state manager then leaves the old
        document (points before ``replaced``) or the new one (from ``replaced``
        on: the step had happened) and no temp file.  Every thread of the process
        counts.

        :param point: a probe point (:attr:`points`, or ``removed``, ``lock-waiting``,
            ``dir-created``).
        :param errno: the error number (``errno.ENOSPC``, ``errno.EIO``...).
        :param nth: which pass fails (1 = the first).
        :raises ValueError: for an unknown point, ``nth < 1`` or ``errno < 1``.
        :raises TypeError: for a point that is not a str, an ``nth`` or ``errno`` that is
            not an int.
        """
        point = checks.choice("point", point, PROBE_POINTS)
        checks.integer("errno", errno, minimum=1)
        checks.integer("nth", nth, minimum=1)
        fault = InjectedFault(point, errno, nth)
        self._installed.append(fault)
        try:
            with probes.listen(fault):
                yield fault
        finally:
            if fault in self._installed:
                self._installed.remove(fault)

    def explore(
        self,
        target: Callable[..., object],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        mode: CrashMode = "kill",
        check: Check | None = None,
        max_runs: int = 1000,
        timeout: float = 60.0,
        all_or_nothing: bool = False,
    ) -> CrashReport:
        """Crash ``target(*args, **kwargs)`` at each of its probe hits in turn; check each crash.

        Run k restores the root to its state before run 1, runs the target under
        this injector's settings and crashes it at its k-th probe hit; the loop
        ends with the first run that completes untouched (so ``runs == hits + 1``),
        a run where the target raises on its own, or ``max_runs``.  After every
        crash (and after the complete run) the disk is checked: every session file
        parses and holds its old content or a document written during the run;
        acknowledged writes are present; no temp file is listed; the lock is free
        at once; ``check(snapshot)`` holds; a following ``update_json`` succeeds.
        Finally the root is restored to its state before run 1: exploring
        changes nothing, and exploring again gives the same report.

        The built-in checks are **per file**: each file on its own must hold its
        old document or one written during the run.  A target that writes two
        files (pay the order in ``orders.json``, then empty ``cart.json``) and is
        killed between the two writes leaves one file new and the other old:
        every file passes, and so does the report, in every mode.  To catch that,
        pass ``all_or_nothing=True`` (every file old, or every file as the
        complete run leaves it) or a ``check`` that states the invariant across
        files (``check=lambda s: not (s["cart"]["orders.json"]["paid"] and
        s["cart"]["cart.json"]["items"])``).

        :param mode: ``"kill"`` (SIGKILL in a forked child), ``"error"`` (``OSError(EIO)``
            in this process) or ``"power-loss"`` (SIGKILL, then every disk state a
            power cut may leave).
        :param check: called with {session id: {filename: document}}; fails by raising
            ``AssertionError`` or returning False.
        :param max_runs: the most runs to make.
        :param all_or_nothing: also require that every crash leaves the whole root
            as it was before the run or as the complete run leaves it (every file
            old, or every file new), for targets whose writes form one change.
        :param timeout: seconds one run of a child may take before it is killed and
            reported (``kill`` and ``power-loss``).
        :raises ValueError: for an unknown mode, ``max_runs < 1`` or a timeout that is
            not positive.
        :raises TypeError: for a target or check that is not callable, or an argument
            of the wrong type (the rule of :mod:`~pytest_sessionstate.testing.checks`).
        """
        checks.callable_("target", target)
        if inspect.iscoroutinefunction(target):
            from .workers import CoroutineRunner

            target = CoroutineRunner(target)  # each run awaits it in an event loop of its own
        mode = checks.choice("mode", mode, CRASH_MODES)
        checks.callable_("check", check, optional=True)
        checks.integer("max_runs", max_runs, minimum=1)
        timeout = checks.seconds("timeout", timeout)
        checks.boolean("all_or_nothing", all_or_nothing)
        arguments = checks.sequence("args", args)
        keywords = checks.mapping("kwargs", kwargs)
        timeout = float(timeout)
        root = self.settings.root
        before = take_snapshot(root)
        report = CrashReport(mode)
        self.reports.append(report)
        self._crash_states = [] if all_or_nothing else None
        try:
            self._loop(
                report,
                target,
                arguments,
                keywords,
                before=before,
                mode=mode,
                check=check,
                max_runs=max_runs,
                timeout=timeout,
            )
            states = self._crash_states
            if states is not None:
                report.violations[:] = check_all_or_nothing(report.violations, before, states)
        finally:
            self._crash_states = None
            restore(root, before)
        return report

    def _loop(
        self,
        report: CrashReport,
        target: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        before: Tree,
        mode: str,
        check: Check | None,
        max_runs: int,
        timeout: float,
    ) -> None:
        root = self.settings.root
        for k in range(1, max_runs + 1):
            restore(root, before)
            if mode == "error":
                outcome = crashlog.run_in_process(target, args, kwargs, self.settings, k)
            else:
                outcome = crashlog.run_forked(
                    target, args, kwargs, settings=self.settings, crash_at=k, timeout=timeout
                )
            report.runs += 1
            if outcome.status == "crashed" and outcome.crash_event is not None:
                crash = self._crash(k, outcome.crash_event)
                report.crashes.append(crash)
                self._check_crash(
                    report, k, crash, before=before, events=outcome.events, mode=mode, check=check
                )
                continue
            if outcome.status == "returned":
                report.hits = outcome.hits
                state = "after the run completed"
                self._check_state(
                    report,
                    k,
                    None,
                    state=state,
                    before=before,
                    events=outcome.events,
                    power_cut=False,
                    check=check,
                )
            else:
                kind, message, text = outcome.error or ("error", "", "")
                report.errors.append(TargetError(k, outcome.hits, kind, message, text))
            return
        report.complete = False

    def _crash(self, k: int, event: ProbeEvent) -> Crash:
        inside = event.session_dir.parent == self.settings.root
        return Crash(k, event.point, event.filename, event.session_dir.name if inside else None)

    def _check_crash(
        self,
        report: CrashReport,
        k: int,
        crash: Crash,
        *,
        before: Tree,
        events: list[ProbeEvent],
        mode: str,
        check: Check | None,
    ) -> None:
        if mode != "power-loss":
            state = "after SIGKILL" if mode == "kill" else "after the injected OSError(EIO)"
            self._check_state(
                report,
                k,
                crash,
                state=state,
                before=before,
                events=events,
                power_cut=False,
                check=check,
            )
            return
        for power_cut in power_cut_states(before, events, self.settings.root):
            restore(self.settings.root, power_cut.tree)
            self._check_state(
                report,
                k,
                crash,
                state=power_cut.label,
                before=before,
                events=events,
                power_cut=True,
                check=check,
            )

    def _check_state(
        self,
        report: CrashReport,
        k: int,
        crash: Crash | None,
        *,
        state: str,
        before: Tree,
        events: list[ProbeEvent],
        power_cut: bool,
        check: Check | None,
    ) -> None:
        checker = StateChecker(self.settings, before, events, power_cut=power_cut, check=check)
        findings, snapshot = checker.run()
        if self._crash_states is not None:
            where = Violation(k, crash, state, None, None, "", "", snapshot)
            self._crash_states.append((where, snapshot))
        for finding in findings:
            report.violations.append(
                Violation(
                    k,
                    crash,
                    state,
                    finding.session_id,
                    finding.filename,
                    finding.found,
                    finding.expected,
                    snapshot,
                )
            )

    @property
    def files_supported(self) -> bool:
        """Whether :meth:`explore_files` can run here (Linux 5.5+, x86_64 or aarch64, seccomp).

        Skip a test with ``if not crash.files_supported: pytest.skip(...)``;
        :meth:`explore_files` itself raises with the reason.
        """
        from . import filecrash

        return filecrash.files_supported()

    @staticmethod
    def acknowledge(value: object) -> None:
        """Called by a target of :meth:`explore_files`: what came before this is promised.

        ``value`` (anything that pickles: a key, a count, a document) is added
        to ``state.acknowledged`` of every crash state after this call; a check
        asserts that what was acknowledged survived.  Outside an exploration it
        does nothing.

        :raises TypeError: if ``value`` does not pickle (in the target: it is reported).
        """
        from . import filecrash

        filecrash.acknowledge(value)

    def explore_files(
        self,
        target: Callable[..., object],
        directory: str | os.PathLike[str],
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        mode: CrashMode = "kill",
        check: Callable[[FileState], object] | None = None,
        max_runs: int = 1000,
        timeout: float = 60.0,
    ) -> CrashReport:
        """Crash ``target(*args, **kwargs)`` at each of its file operations inside ``directory``.

        Run k restores ``directory`` to its state before run 1, runs the target
        in a forked child whose file system calls are intercepted (seccomp user
        notification: C extensions are seen too) and crashes it at its k-th
        file-mutating operation inside ``directory``: creating or truncating
        opens, writes of every kind, ``ftruncate``, ``fallocate``, ``fsync``,
        ``fdatasync``, ``sync_file_range``, ``rename``, ``unlink``, ``mkdir``,
        ``rmdir``, ``link``, ``symlink``.  Reads, and operations outside
        ``directory``, run untouched.  The loop ends with the first run that
        completes with fewer than k operations (``runs == hits + 1``), a run
        where the target raises on its own or hangs, or ``max_runs``.  Finally
        the directory is restored to its state before run 1.

        :param directory: the tree whose operations are crash points (it must exist).
        :param mode: ``"kill"`` (the k-th operation does not happen: SIGKILL),
            ``"error"`` (it fails with ``OSError(EIO)``; the target goes on and the
            check runs when it ends) or ``"power-loss"`` (SIGKILL, then each state
            a power cut may leave, see :doc:`/crash-files`).
        :param check: called with a :class:`~pytest_sessionstate.testing.filecrash.FileState`
            for every crash state (``state.path``, ``state.acknowledged``,
            ``state.point``) and for the state after the complete run; it fails
            by raising or returning False.  Without it the report lists the crash points.
        :param max_runs: the most runs to make.
        :param timeout: seconds one run may take before it is killed and reported.
        :returns: a :class:`CrashReport`; ``crashes`` hold ``k``, ``operation``, ``path``.
        :raises TypeError: for a target or check that is not callable, a directory
            that is not a str or path.
        :raises ValueError: for an unknown mode, ``max_runs < 1``, a bad timeout, a
            directory that does not exist.
        :raises RuntimeError: (``SeccompUnavailable``) where the interception cannot
            run, saying why (see :attr:`files_supported`).
        """
        from . import filecrash

        return filecrash.explore_files(
            target,
            directory,
            args=args,
            kwargs=kwargs,
            mode=mode,
            check=check,
            max_runs=max_runs,
            timeout=timeout,
            settings=self.settings,
        )

    def close(self) -> None:
        """Uninstall every :meth:`fail_at` fault still installed (the fixture's teardown)."""
        for fault in list(self._installed):
            probes.remove_listener(fault)
        self._installed.clear()
