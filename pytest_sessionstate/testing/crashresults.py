"""What a crash exploration returns: the crashes, the violations, the target's errors.

The result types of :meth:`CrashInjector.explore
<pytest_sessionstate.testing.crash.CrashInjector.explore>` and of
:func:`~pytest_sessionstate.testing.filecrash.explore_files`, apart from the
engines that produce them, as :mod:`.results` holds those of the contention
half.  :class:`CrashReport` answers :meth:`~CrashReport.assert_ok` like
:class:`~pytest_sessionstate.ContentionResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .crashcheck import show, subject

__all__ = ["Crash", "CrashReport", "TargetError", "Violation"]

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
        about = subject(self.session_id, self.filename)
        text = (
            f"run {self.run}, {when}, state: {self.state}\n"
            f"    {about}found {self.found}\n"
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
