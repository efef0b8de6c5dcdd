"""``crash.explore_files``: crash any code at each of its file operations in a directory.

Run k (k = 1, 2, ...) restores the directory to its state before run 1, forks
a child that installs the seccomp filter (:mod:`.seccomp`) and runs the
target, and stops the child at its k-th file-mutating operation inside the
directory (:mod:`.fileops`): killed before the operation happens (``"kill"``),
the operation failed with ``EIO`` and the target let go on (``"error"``), or
killed and then the directory rewound to each state a power cut may leave
(``"power-loss"``, :mod:`.filemodel`).  The user's ``check`` then judges each
state.  The loop ends with the first run that completes with fewer than k
operations.

The parent serves the child's notifications one at a time: every call outside
the directory (Python's own writes to pipes and terminals, files elsewhere)
is continued at once; every counted one is recorded, then continued, failed
or the child killed.  Acknowledgements (:func:`acknowledge`) and the child's
ending travel over a socketpair whose sends are not intercepted; the parent
drains it before deciding on each notification, so ``state.acknowledged``
holds exactly what was acknowledged before the crash.  Every wait is bounded:
a run that exceeds its timeout is killed (with its process group) and reported.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..clock import real_monotonic
from ..config import Settings, use_settings
from . import checks, rawchild, seccomp
from .crash import CRASH_MODES, CrashMode
from .crashlog import describe_exception
from .crashresults import Crash, CrashReport, TargetError, Violation
from .filemodel import MAX_STATES, PersistenceRecorder, PowerCut, describe_files
from .fileops import Decoder, FileOp
from .snapshot import Tree, restore, take_snapshot

__all__ = [
    "FileCrash",
    "FileRunOutcome",
    "FileViolation",
    "explore_files",
    "FileState",
    "acknowledge",
    "files_supported",
    "run_intercepted",
    "unsupported_reason",
]

_EXIT_RAISED = 3
_EXIT_BROKEN = 70
_EXIT_UNAVAILABLE = 71
#: Seconds the parent waits for the child to hand over its listener.
_HANDOVER_TIMEOUT = 30.0

#: The child's end of the socketpair while it runs a target (None elsewhere).
_channel: socket.socket | None = None


def unsupported_reason() -> str | None:
    """Why ``explore_files`` cannot run on this platform, or None."""
    return seccomp.unsupported_reason()


def files_supported() -> bool:
    """Whether ``explore_files`` can run on this platform."""
    return unsupported_reason() is None


def _send(sock: socket.socket, record: tuple[Any, ...]) -> None:
    sock.sendall(rawchild.frame(record))


def acknowledge(value: object) -> None:
    """Record that what the target did before this call is promised (``state.acknowledged``).

    In a target run by ``explore_files`` the value is sent to the explorer at
    once, before the target's next operation; anywhere else this does nothing,
    so the target also runs unexplored.

    :raises TypeError: if the value cannot be pickled (it must reach the explorer).
    """
    if _channel is None:
        return
    try:
        data = rawchild.frame(("ack", value))
    except Exception as exc:
        raise TypeError(
            f"acknowledge() needs a value that pickles, not {type(value).__name__} ({exc})"
        ) from exc
    _channel.sendall(data)


@dataclass(frozen=True)
class FileState:
    """What ``check`` is given: one crash state of the directory.

    :ivar path: the directory holding the state (the explored directory itself,
        rewound to the state); open it with the library under test.
    :ivar acknowledged: the values the target passed to ``crash.acknowledge``
        before the crash, in order.
    :ivar point: the operation the run crashed at (None after a run that completed).
    :ivar label: which state this is (``"after SIGKILL"``, ``"power cut: ..."``).
    :ivar operations: every operation the run made up to the crash, in order.
    """

    path: Path
    acknowledged: tuple[Any, ...]
    point: FileOp | None
    label: str
    operations: tuple[FileOp, ...] = field(default=(), repr=False)


@dataclass
class FileRunOutcome:
    """What one intercepted run did.

    :ivar status: ``"crashed"``, ``"returned"``, ``"raised"`` (on its own), ``"hung"``
        or ``"died"``.
    :ivar operations: the counted operations, in order (the crash point last).
    :ivar crash: the operation it crashed at.
    :ivar acknowledged: the acknowledged values, in order, up to the crash.
    :ivar error: (type, message, traceback) for ``raised``/``hung``/``died``.
    :ivar power_cuts: the power-cut states (``"power-loss"`` mode only).
    """

    status: str
    operations: list[FileOp] = field(default_factory=list)
    crash: FileOp | None = None
    acknowledged: list[Any] = field(default_factory=list)
    error: tuple[str, str, str] | None = None
    power_cuts: list[PowerCut] = field(default_factory=list)


def _child(
    sock: socket.socket,
    target: Callable[..., object],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    settings: Settings | None,
) -> None:  # pragma: no cover - runs in the forked child (its outcome is tested)
    global _channel
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    try:
        listener = seccomp.install_filter()
    except seccomp.SeccompUnavailable as exc:
        _send(sock, ("unavailable", str(exc)))
        os._exit(_EXIT_UNAVAILABLE)
    socket.send_fds(sock, [b"L"], [listener])
    os.close(listener)
    if sock.recv(1) != b"g":  # the parent went away
        os._exit(_EXIT_BROKEN)
    _channel = sock
    status = 0
    try:
        if settings is not None:
            with use_settings(settings):
                target(*args, **kwargs)
        else:
            target(*args, **kwargs)
    except BaseException as exc:
        status = _EXIT_RAISED
        try:
            _send(sock, ("raised", *describe_exception(exc)))
        except BaseException:
            status = _EXIT_BROKEN
    else:
        _send(sock, ("returned",))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


class _Frames:
    """Reassembles the child's frames from the socket."""

    def __init__(self) -> None:
        self.reader = rawchild.FrameReader()
        self.eof = False

    def drain(self, sock: socket.socket) -> list[tuple[Any, ...]]:
        chunks = []
        while not self.eof:
            try:
                chunk = sock.recv(1 << 16, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
        return self.reader.feed(b"".join(chunks))


def _receive_listener(sock: socket.socket, pid: int) -> tuple[int | None, str | None]:
    """The child's listener descriptor, or (None, why not)."""
    ready, _, _ = select.select([sock], [], [], _HANDOVER_TIMEOUT)
    if not ready:
        return None, f"the child did not install its filter within {_HANDOVER_TIMEOUT:g} s"
    try:
        data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 1)
    except OSError as exc:
        return None, f"the child's filter could not be received: {exc}"
    if fds:
        return fds[0], None
    frames = _Frames()
    frames.reader.pending += data
    for record in frames.drain(sock):
        if record[0] == "unavailable":
            return None, str(record[1])
    return None, "the child ended before it installed its filter"


def run_intercepted(
    target: Callable[..., object],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    root: str,
    crash_at: int,
    mode: str,
    timeout: float,
    initial: Tree,
    settings: Settings | None = None,
) -> FileRunOutcome:
    """Run ``target`` in an intercepted child, stopped at its ``crash_at``-th operation in ``root``.

    :param root: the directory (absolute, symlinks resolved), restored to ``initial``.
    :param mode: ``"kill"``, ``"error"`` or ``"power-loss"``.
    :raises seccomp.SeccompUnavailable: if the child could not install its filter.
    """
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = rawchild.fork()
    except BaseException:
        parent_sock.close()
        child_sock.close()
        raise
    if pid == 0:  # pragma: no cover - the child
        try:
            parent_sock.close()
            _child(child_sock, target, args, kwargs, settings)
        finally:
            os._exit(_EXIT_BROKEN)
    child_sock.close()
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    try:
        return _serve(
            parent_sock,
            pid,
            root=root,
            crash_at=crash_at,
            mode=mode,
            timeout=timeout,
            initial=initial,
        )
    finally:
        parent_sock.close()


def _serve(
    sock: socket.socket,
    pid: int,
    *,
    root: str,
    crash_at: int,
    mode: str,
    timeout: float,
    initial: Tree,
) -> FileRunOutcome:
    deadline = real_monotonic() + timeout
    listener, why = _receive_listener(sock, pid)
    if listener is None:
        rawchild.kill(pid)
        rawchild.reap(pid, real_monotonic() + 5.0)
        raise seccomp.SeccompUnavailable(f"crash.explore_files cannot intercept here: {why}")
    outcome = FileRunOutcome("died")
    decoder = Decoder(root)
    model = PersistenceRecorder(root, initial) if mode == "power-loss" else None
    frames = _Frames()
    ending: tuple[Any, ...] | None = None
    timed_out = False
    killed = False
    acknowledged: list[Any] = []
    at_crash: list[Any] | None = None
    status: int | None = None
    try:
        sock.sendall(b"g")
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        poller.register(sock.fileno(), select.POLLIN)
        while True:
            remaining = deadline - real_monotonic()
            if remaining <= 0:
                timed_out = True
                rawchild.kill(pid)
                break
            events = dict(poller.poll(min(remaining, 1.0) * 1000))
            for record in frames.drain(sock):
                if record[0] == "ack":
                    acknowledged.append(record[1])
                else:
                    ending = record
            flags = events.get(listener, 0)
            if flags & select.POLLIN:
                note = seccomp.receive(listener)
                if note is not None:
                    killed = _decide(
                        note,
                        listener,
                        decoder,
                        model=model,
                        outcome=outcome,
                        crash_at=crash_at,
                        mode=mode,
                        pid=pid,
                    )
                    if killed and at_crash is None:
                        at_crash = list(acknowledged)
                continue
            if flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                break  # every process using the filter is gone
            if frames.eof and killed:
                break
        status = rawchild.reap(pid, real_monotonic() + 5.0)
        for record in frames.drain(sock):
            if record[0] == "ack":
                acknowledged.append(record[1])
            else:
                ending = record
    finally:
        os.close(listener)
        decoder.close()
    outcome.acknowledged = at_crash if at_crash is not None else acknowledged
    if timed_out:
        message = f"the target did not finish within {timeout:g} s; it was killed"
        outcome.status, outcome.error = "hung", ("timeout", message, "")
    elif outcome.crash is not None:
        outcome.status = "crashed"
    elif ending is not None and ending[0] == "returned":
        outcome.status = "returned"
    elif ending is not None and ending[0] == "raised":
        outcome.status, outcome.error = "raised", (ending[1], ending[2], ending[3])
    else:
        if status is not None and os.WIFSIGNALED(status):
            how = f"was killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
        elif status is not None:
            how = f"exited with status {os.WEXITSTATUS(status)}"
        else:
            how = "could not be waited for"
        outcome.status = "died"
        outcome.error = ("died", f"the child process running the target {how}", "")
    if model is not None and outcome.status in ("crashed", "returned"):
        outcome.power_cuts = model.states(take_snapshot(Path(root)), limit=MAX_STATES)
    return outcome


def _decide(
    note: seccomp.Notification,
    listener: int,
    decoder: Decoder,
    *,
    model: PersistenceRecorder | None,
    outcome: FileRunOutcome,
    crash_at: int,
    mode: str,
    pid: int,
) -> bool:
    """Answer one notification; True if the child was killed."""
    op = decoder.decode(note)
    if op is None:
        seccomp.respond_continue(listener, note.id)
        return False
    if not seccomp.notification_id_valid(listener, note.id):
        return False  # the caller died while we read it: nothing happened
    outcome.operations.append(op)
    if op.k == crash_at and outcome.crash is None:
        outcome.crash = op
        if mode == "error":
            seccomp.respond_error(listener, note.id, errno.EIO)
            return False
        rawchild.kill(pid)
        return True
    if model is not None:
        model.before(op)
    seccomp.respond_continue(listener, note.id)
    return False


# -- the exploration ------------------------------------------------------------


def check_directory(directory: object) -> Path:
    """``directory`` as an absolute Path with symlinks resolved.

    :raises TypeError: if it is not a str or path-like.
    :raises ValueError: if it is not an existing directory.
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a str or a path, not {type(directory).__name__}")
    path = Path(os.fspath(directory))
    if isinstance(os.fspath(directory), bytes):  # pragma: no cover - PathLike[bytes]
        raise TypeError("directory must be a str or a path, not bytes")
    if not path.is_dir():
        raise ValueError(f"directory must be an existing directory, not {str(path)!r}")
    return Path(os.path.realpath(path))


def describe_state(path: Path) -> list[str]:
    """The state's files, one line each (for violation messages)."""
    return describe_files(path)


def restore_tree(root: Path, tree: Tree) -> None:
    """Make ``root`` hold ``tree`` (the snapshot module's restore)."""
    restore(root, tree)


#: How many operations a violation's description lists (the last ones before the crash).
_OPS_SHOWN = 25
#: How many of the state's files it lists.
_FILES_SHOWN = 20

FileCheck = Callable[[FileState], object]


class FileCrash(Crash):
    """Where one run of ``explore_files`` crashed: ``k``, ``operation``, ``path``.

    A :class:`~pytest_sessionstate.testing.crash.Crash` whose ``point`` is the
    operation and ``filename`` the path, relative to the directory.
    """

    __slots__ = ()

    @property
    def operation(self) -> str:
        """The operation (``"write"``, ``"rename"``...)."""
        return self.point

    @property
    def path(self) -> str:
        """The path it concerned, relative to the directory (``"."``: the directory)."""
        return self.filename or "."

    def __str__(self) -> str:
        return f"at operation {self.k}: {self.point} {self.path!r}"


@dataclass(frozen=True)
class FileViolation(Violation):
    """A failed check of ``explore_files``: the operations, the state's files, the error.

    :ivar operations: the run's operations up to the crash, one line each.
    :ivar files: the state's files, one line each.
    :ivar acknowledged: ``repr`` of each acknowledged value.
    """

    operations: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    acknowledged: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        """A readable account: run, crash point, state, the check's error, operations, files."""
        when = "after it completed" if self.crash is None else f"crashed {self.crash}"
        text = [
            f"run {self.run}, {when}, state: {self.state}",
            f"    {self.found}",
            "    operations:",
            *(f"      {line}" for line in self.operations),
            f"    acknowledged: [{', '.join(self.acknowledged)}]",
            "    files:",
            *(f"      {line}" for line in self.files),
        ]
        return "\n".join(text)


def _crash_record(op: FileOp) -> FileCrash:
    return FileCrash(op.k, op.operation, op.path)


def explore_files(
    target: Callable[..., object],
    directory: object,
    *,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    mode: CrashMode = "kill",
    check: FileCheck | None = None,
    max_runs: int = 1000,
    timeout: float = 60.0,
    settings: Settings | None = None,
) -> CrashReport:
    """The loop behind :meth:`CrashInjector.explore_files` (see there)."""

    checks.callable_("target", target)
    mode = checks.choice("mode", mode, CRASH_MODES)
    checks.callable_("check", check, optional=True)
    checks.integer("max_runs", max_runs, minimum=1)
    timeout = checks.seconds("timeout", timeout)
    arguments, keywords = checks.sequence("args", args), checks.mapping("kwargs", kwargs)
    root = check_directory(directory)
    reason = unsupported_reason()
    if reason is not None:
        raise seccomp.SeccompUnavailable(f"crash.explore_files cannot run here: {reason}")
    before = take_snapshot(root)
    report = CrashReport(mode)
    try:
        for k in range(1, max_runs + 1):
            restore(root, before)
            outcome = run_intercepted(
                target,
                arguments,
                keywords,
                root=str(root),
                crash_at=k,
                mode=mode,
                timeout=float(timeout),
                initial=before,
                settings=settings,
            )
            report.runs += 1
            if outcome.status == "crashed" and outcome.crash is not None:
                report.crashes.append(_crash_record(outcome.crash))
                _judge(report, k, outcome, root=root, mode=mode, check=check)
                continue
            if outcome.status == "returned":
                report.hits = len(outcome.operations)
                _judge(report, k, outcome, root=root, mode=mode, check=check)
            else:
                kind, message, text = outcome.error or ("error", "", "")
                report.errors.append(TargetError(k, len(outcome.operations), kind, message, text))
            return report
        report.complete = False
        return report
    finally:
        restore(root, before)


def _judge(
    report: CrashReport,
    k: int,
    outcome: FileRunOutcome,
    *,
    root: Path,
    mode: str,
    check: FileCheck | None,
) -> None:
    crashed = outcome.crash is not None
    if mode == "power-loss":
        prefix = "power cut" if crashed else "power cut after the target returned"
        for cut in outcome.power_cuts:
            restore(root, cut.tree)
            _check_one(report, k, outcome, root=root, label=f"{prefix}: {cut.label}", check=check)
        return
    if not crashed:
        label = "after the run completed"
    elif mode == "kill":
        label = "after SIGKILL"
    else:
        label = "after the injected OSError(EIO); the target ran on to its end"
    _check_one(report, k, outcome, root=root, label=label, check=check)


def _check_one(
    report: CrashReport,
    k: int,
    outcome: FileRunOutcome,
    *,
    root: Path,
    label: str,
    check: FileCheck | None,
) -> None:
    if check is None:
        return
    state = FileState(
        root, tuple(outcome.acknowledged), outcome.crash, label, tuple(outcome.operations)
    )
    try:
        verdict = check(state)
    except Exception as exc:
        kind, message, _ = describe_exception(exc)
        found = f"check raised {kind}: {message}" if message else f"check raised {kind}"
    else:
        if verdict is not False:
            return
        found = "check returned False"
    report.violations.append(_violation(k, outcome, root, label, found))


def _violation(
    k: int, outcome: FileRunOutcome, root: Path, label: str, found: str
) -> FileViolation:
    ops = outcome.operations
    lines = [f"{op.k}. {op}" for op in ops[-_OPS_SHOWN:]]
    if len(ops) > _OPS_SHOWN:
        lines.insert(0, f"... {len(ops) - _OPS_SHOWN} earlier operations")
    if outcome.crash is not None:
        verb = "failed with EIO" if "EIO" in label else "never happened"
        lines[-1] += f"   <- crashed here (this operation {verb})"
    files = describe_state(root)
    if len(files) > _FILES_SHOWN:
        files = [*files[:_FILES_SHOWN], f"... {len(files) - _FILES_SHOWN} more"]
    crash = None if outcome.crash is None else _crash_record(outcome.crash)
    return FileViolation(
        k,
        crash,
        label,
        None,
        None if outcome.crash is None else outcome.crash.path,
        found,
        "check(state) to pass",
        {},
        operations=tuple(lines),
        files=tuple(files),
        acknowledged=tuple(repr(value) for value in outcome.acknowledged),
    )
