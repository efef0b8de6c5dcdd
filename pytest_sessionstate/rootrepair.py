"""Repair of a session root: removes what a crash may leave, and nothing else.

A writer killed mid-write leaves its temp file behind (an *orphan*); a session
whose last document was deleted, or whose first write never happened, is left
empty.  :func:`repair_root` removes both, each under its session's lock, and
never touches a document, corrupt or not: those need a person (``check`` names
them).

Why the lock: a temp file in a session whose lock this process holds cannot
belong to a write in progress (writers create temp files under the lock), and a
session found empty under the lock cannot gain a document before it is removed
(writers write under the lock).  Its removal goes through
:meth:`~pytest_sessionstate.StateManager.delete`, which takes the lock file last,
so a writer queued on the lock starts over on a fresh session instead of
writing into a removed directory.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .config import Settings
from .errors import SessionError, SessionLockError
from .proclocks import file_key, read_locks
from .rootcheck import LOCK_FILENAME, CheckReport, SessionInfo, check_root, is_temp_name
from .state import StateManager

__all__ = ["Action", "RepairReport", "repair_root"]

_DIR_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


@dataclass(frozen=True)
class Action:
    """One thing repair did, would do (``--dry-run``), or could not do.

    :param kind: ``remove-temp``, ``remove-session``, ``keep`` (a session that gained
        a document meanwhile), ``skip`` (in use) or ``error``.
    :param path: relative to the root.
    :param done: True once settled (never in a dry run, never for ``skip`` or ``error``).
    :param message: what happened, for people.
    """

    kind: str
    path: str
    done: bool
    message: str


@dataclass
class RepairReport:
    """What :func:`repair_root` did; ``check`` is the survey it started from."""

    check: CheckReport
    actions: list[Action]
    dry_run: bool

    @property
    def pending(self) -> list[Action]:
        """Removals not done: all of them in a dry run, else the skipped and failed ones."""
        return [action for action in self.actions if not action.done]

    @property
    def unrepaired(self) -> int:
        """How many of the check's findings are not repair's to fix (they need a person)."""
        return sum(
            1
            for finding in self.check.findings
            if finding.kind not in ("orphaned-temp", "empty-session")
            or (finding.kind == "empty-session" and _has_others(self.check, finding.path))
        )


def _has_others(check: CheckReport, session_id: str) -> bool:
    return any(s.session_id == session_id and s.others for s in check.sessions)


def _holders(lock_file: Path) -> str:
    """`` (held by pid N)``, from ``/proc/locks``, or nothing when it cannot be seen."""
    locks = read_locks()
    try:
        info = os.stat(lock_file, follow_symlinks=False)
    except OSError:
        return ""
    if locks is None:
        return ""
    pids = sorted(
        {
            str(entry.pid) if entry.pid is not None else "?"
            for entry in locks.get(file_key(info), [])
            if not entry.waiting
        }
    )
    return f" (held by pid {', '.join(pids)})" if pids else ""


def repair_root(
    root: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    lock_timeout: float = 0.0,
    on_action: Callable[[Action], None] | None = None,
) -> RepairReport:
    """Remove orphaned temp files and empty sessions from a root.

    :param dry_run: only say what would be removed; take no lock, touch nothing.
    :param lock_timeout: seconds to wait for a session's lock; a session still in
        use then is skipped (and reported).
    :param on_action: called with each :class:`Action` as it happens.
    :raises RootError: if the root cannot be used.
    """
    check = check_root(root)
    actions: list[Action] = []

    def act(action: Action) -> None:
        actions.append(action)
        if on_action is not None:
            on_action(action)

    orphans: dict[str, list[str]] = {}
    empties: set[str] = set()
    for finding in check.findings:
        if finding.session_id is None:
            continue
        if finding.kind == "orphaned-temp":
            orphans.setdefault(finding.session_id, []).append(finding.path)
        elif finding.kind == "empty-session" and not _has_others(check, finding.session_id):
            empties.add(finding.session_id)
    settings = Settings(check.root, lock_timeout=lock_timeout, durable=True)
    for session in check.sessions:
        session_id = session.session_id
        if session_id not in orphans and session_id not in empties:
            continue
        if dry_run:
            for path in orphans.get(session_id, []):
                act(Action("remove-temp", path, False, f"would remove orphaned temp {path}"))
            if session_id in empties:
                act(
                    Action(
                        "remove-session",
                        session_id,
                        False,
                        f"would remove empty session {session_id}",
                    )
                )
            continue
        _repair_session(session, settings, lock_timeout, session_id in empties, act)
    return RepairReport(check, actions, dry_run)


def _repair_session(
    session: SessionInfo,
    settings: Settings,
    lock_timeout: float,
    remove_if_empty: bool,
    act: Callable[[Action], None],
) -> None:
    session_id = session.session_id
    try:
        manager = StateManager(session_id, settings=settings)
        with manager.lock(timeout=lock_timeout):
            fd = os.open(manager.session_dir, _DIR_FLAGS)
            try:
                names = os.listdir(fd)
                removed = []
                for name in sorted(names):
                    if name == LOCK_FILENAME or not is_temp_name(name):
                        continue
                    if not stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                        continue
                    os.unlink(name, dir_fd=fd)
                    removed.append(name)
                if removed:
                    os.fsync(fd)  # the removals are durable before they are reported
                for name in removed:
                    path = f"{session_id}/{name}"
                    act(Action("remove-temp", path, True, f"removed orphaned temp {path}"))
                rest = [name for name in names if name != LOCK_FILENAME and name not in removed]
            finally:
                os.close(fd)
            if remove_if_empty and not rest:
                manager.delete()
                act(
                    Action(
                        "remove-session", session_id, True, f"removed empty session {session_id}"
                    )
                )
            elif remove_if_empty:
                act(
                    Action(
                        "keep",
                        session_id,
                        True,
                        f"kept session {session_id}: it is no longer empty",
                    )
                )
    except SessionLockError:
        holders = _holders(settings.root / session_id / LOCK_FILENAME)
        act(
            Action(
                "skip",
                session_id,
                False,
                f"skipped session {session_id}: in use{holders}; try again later"
                " or wait longer with --lock-timeout",
            )
        )
    except (SessionError, OSError) as exc:
        act(Action("error", session_id, False, f"could not repair session {session_id}: {exc}"))
