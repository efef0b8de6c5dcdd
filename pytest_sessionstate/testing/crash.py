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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, get_args

from .. import probes
from ..config import Settings
from ..probes import PROBE_POINTS, WRITE_POINTS, ProbeEvent, ProbePoint
from . import checks, crashlog
from .allornothing import check_all_or_nothing
from .crashcheck import Check, StateChecker, show
from .powerloss import power_cut_states
from .snapshot import Tree, restore, take_snapshot

if TYPE_CHECKING:
    from .filecrash import FileState

__all__ = [
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

#: The crash modes of :meth:`CrashInjector.explore`.
MODES: tuple[CrashMode, ...] = get_args(CrashMode)

#: How many violations :meth:`CrashReport.assert_ok` spells out.
_SUMMARY_LIMIT = 10
#: How many characters of a snapshot a violation's description shows.
_SNAPSHOT_LIMIT = 400


class Crash(NamedTuple):
    """Where one run crashed.

    :ivar k: the run, and the probe hit it crashed at (1-based).
    :ivar point: the probe point of that hit (the crash came right after its step).
    :ivar filename: the file being written there (None for lock points).
    :ivar session_id: the session it concerned.
    """

    k: int
    point: str
    filename: str | None
    session_id: str | None = None

    @property
    def run(self) -> int:
        """The run, as :attr:`Violation.run` and :attr:`TargetError.run` name it (= ``k``)."""
        return self.k

    def __str__(self) -> str:
        where = [f"{self.filename}"] if self.filename is not None else []
        if self.session_id is not None:
            where.append(f"session {self.session_id!r}")
        suffix = f" ({', '.join(where)})" if where else ""
        return f"right after {self.point!r}{suffix}"


@dataclass(frozen=True)
class Violation:
    """A check that failed after a crash (or after the complete run).

    :ivar run: the run (k) it was found in.
    :ivar crash: where that run crashed; None after the run that completed.
    :ivar state: the disk state checked (``"after SIGKILL"``, ``"power cut: ..."``...).
    :ivar session_id: the session the finding concerns (None: the user's check).
    :ivar filename: the file it concerns, if any.
    :ivar found: what was found.
    :ivar expected: what was expected.
    :ivar snapshot: {session id: {filename: document}} of the files that parsed.
    """

    run: int
    crash: Crash | None
    state: str
    session_id: str | None
    filename: str | None
    found: str
    expected: str
    snapshot: dict[str, dict[str, Any]] = field(hash=False)

    @property
    def k(self) -> int:
        """The run, as :attr:`Crash.k` names it (= ``run``)."""
        return self.run

    @property
    def point(self) -> str | None:
        """The probe point the run crashed at (None after the complete run)."""
        return None if self.crash is None else self.crash.point

    @property
    def description(self) -> str:
        """A readable account: which run, which point, which file, found, expected."""
        when = "after it completed" if self.crash is None else f"crashed {self.crash}"
        where = []
        if self.session_id is not None:
            where.append(f"session {self.session_id!r}")
        if self.filename is not None:
            where.append(f"file {self.filename!r}")
        subject = (", ".join(where) + ": ") if where else ""
        text = (
            f"run {self.run}, {when}, state: {self.state}\n"
            f"    {subject}found {self.found}\n"
            f"    expected {self.expected}"
        )
        if self.session_id is None:  # the user's check: show what it was given
            text += f"\n    snapshot: {show(self.snapshot, limit=_SNAPSHOT_LIMIT)}"
        return text

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class TargetError:
    """The target raised on its own (no fault was injected in that run).

    :ivar run: the run.
    :ivar hits: the probe hits it made before raising.
    :ivar type: the exception's type name.
    :ivar message: its message.
    :ivar traceback: its traceback text (not compared: it names files and lines).
    """

    run: int
    hits: int
    type: str
    message: str
    traceback: str = field(default="", compare=False, repr=False)

    @property
    def exc_type(self) -> str:
        """The exception's type name, as a :class:`WorkerError
        <pytest_sessionstate.testing.contention.WorkerError>` names it (= ``type``)."""
        return self.type

    def __str__(self) -> str:
        return (
            f"run {self.run}: the target raised {self.type}: {self.message} on its own "
            f"(after {self.hits} probe hits, no fault injected)"
        )


@dataclass
class CrashReport:
    """What :meth:`CrashInjector.explore` found.  Two reports of the same target compare equal.

    :ivar mode: the crash mode.
    :ivar runs: the number of runs.
    :ivar crashes: where each crashed run crashed, in order.
    :ivar violations: every failed check, in order.
    :ivar errors: the target's own exceptions, or runs that hung or died.
    :ivar hits: the probe hits of the run that completed (None if none did).
    :ivar complete: False if ``max_runs`` stopped the loop before a run completed.
    """

    mode: str
    runs: int = 0
    crashes: list[Crash] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    errors: list[TargetError] = field(default_factory=list)
    hits: int | None = None
    complete: bool = True

    @property
    def ok(self) -> bool:
        """No violation and no error of the target."""
        return not self.violations and not self.errors

    def summary(self) -> str:
        """A readable account of the exploration and of every problem (the first ten)."""
        hits = f"{self.hits} probe hits" if self.hits is not None else "no run completed"
        head = f"crash exploration (mode {self.mode!r}): {self.runs} runs, {hits}"
        if not self.complete:
            head += ", stopped by max_runs before a run completed untouched"
        lines = [head]
        if self.ok:
            lines.append("no violation: every crash left a state that passed every check")
        problems: list[str] = [str(error) for error in self.errors]
        problems += [v.description for v in self.violations]
        if self.violations:
            first = self.violations[0]
            lines.append(
                f"{len(self.violations)} violation(s) in {len({v.run for v in self.violations})}"
                f" run(s); the first in run {first.run}"
                + ("" if first.crash is None else f", crashed {first.crash}")
            )
        lines += problems[:_SUMMARY_LIMIT]
        if len(problems) > _SUMMARY_LIMIT:
            lines.append(f"... and {len(problems) - _SUMMARY_LIMIT} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        # Short: pytest prints it in ``assert report.ok``; the details are in summary().
        return (
            f"<CrashReport mode={self.mode!r} runs={self.runs} crashes={len(self.crashes)} "
            f"violations={len(self.violations)} errors={len(self.errors)}>"
        )

    def assert_ok(self) -> None:
        """Raise ``AssertionError`` with :meth:`summary` unless :attr:`ok`.

        The failure shows the summary only, not this library's frames.
        """
        __tracebackhide__ = True
        if not self.ok:
            raise AssertionError(self.summary())

    def raise_errors(self) -> None:
        """The same as :meth:`assert_ok`, under the name :class:`ContentionResult
        <pytest_sessionstate.ContentionResult>` uses: both results answer both."""
        __tracebackhide__ = True
        self.assert_ok()


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
        mode = checks.choice("mode", mode, MODES)
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
