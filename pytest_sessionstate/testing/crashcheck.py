"""The checks run on the disk after every crash of an exploration.

From the root's snapshot before the run and the run's probe log, each session
file gets its *history*: the bytes it held before the run (or absent), then
every version the run put in place (``replaced``: a document; ``removed``:
absent).  A version is *acknowledged* when the session's lock was released
after it was in place (and, for a durable write, after ``dir-synced``): the
call that wrote it was returning.  After a crash:

* every session file parses, and equals a version of its history: the old
  document or one written during the run; once a version is acknowledged, only
  it or a later one (when acknowledgements are checked: always, except for
  non-durable writes under a power cut);
* ``list_files`` lists no temp file;
* the session's lock is free at once (``lock(timeout=0)`` from another thread);
* the user's ``check(snapshot)`` holds (when every file parsed);
* a following ``update_json`` succeeds, returns the document it read, and
  leaves no temp file in the session directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import codec, fsops
from ..config import Settings
from ..errors import SessionCorruptError, SessionError
from ..names import is_session_file
from ..probes import ProbeEvent
from ..state import StateManager, list_sessions
from .snapshot import Tree

__all__ = [
    "Check",
    "Finding",
    "History",
    "Snapshot",
    "StateChecker",
    "histories",
    "show",
    "why_lock_is_held",
]

#: What a consistency check gets: ``{session id: {filename: document}}``, every document
#: of the session root after a crash.
Snapshot = dict[str, dict[str, Any]]
#: The user's consistency check: gets the :data:`Snapshot`; fails by raising
#: (AssertionError) or returning False.
Check = Callable[[Snapshot], object]

_SHOW_LIMIT = 120
#: Seconds a check may wait for a lock (it should be free at once).
_CHECK_LOCK_TIMEOUT = 5.0


def show(value: Any, *, limit: int = _SHOW_LIMIT) -> str:
    """A short, deterministic rendering of a document, bytes or absence."""
    if value is None:
        return "absent"
    if isinstance(value, bytes):
        text = repr(value[:limit])
        if len(value) > limit or len(text) > limit:
            text = text[:limit] + "..."
        return f"{len(value)} bytes {text}"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def subject(session_id: str | None, filename: str | None) -> str:
    """``"session 's1', file 'a.json': "``: what a finding is about, as its prefix."""
    where = []
    if session_id is not None:
        where.append(f"session {session_id!r}")
    if filename is not None:
        where.append(f"file {filename!r}")
    return (", ".join(where) + ": ") if where else ""


@dataclass(frozen=True)
class Finding:
    """One thing found wrong on disk.

    :ivar session_id: the session concerned (None: the check as a whole).
    :ivar filename: the file concerned, if any.
    :ivar found: what was found.
    :ivar expected: what was expected.
    """

    session_id: str | None
    filename: str | None
    found: str
    expected: str

    def __str__(self) -> str:
        return (
            f"{subject(self.session_id, self.filename)}found {self.found}; expected {self.expected}"
        )


@dataclass
class History:
    """The versions of one session file during a run.

    :ivar versions: bytes (or None: absent); index 0 is the state before the run.
    :ivar durable: whether each version was written durably.
    :ivar acked: index of the last acknowledged version (0: none).
    """

    versions: list[bytes | None]
    durable: list[bool] = field(default_factory=lambda: [True])
    acked: int = 0


def histories(
    before: Tree, events: Iterable[ProbeEvent], root: Path
) -> dict[tuple[str, str], History]:
    """Each session file's history, keyed by (session id, filename)."""
    result: dict[tuple[str, str], History] = {}
    for path, entry in before.items():
        directory, _, name = path.partition("/")
        if entry.kind == "file" and is_session_file(directory, name):
            result[(directory, name)] = History([entry.data])
    pending: dict[tuple[str, str], bytes] = {}
    unacked: dict[str, list[tuple[str, str]]] = {}
    complete: dict[str, list[tuple[str, str]]] = {}

    def history(key: tuple[str, str]) -> History:
        return result.setdefault(key, History([None]))

    def add(session: str, filename: str, data: bytes | None, durable: bool) -> None:
        key = (session, filename)
        item = history(key)
        item.versions.append(data)
        item.durable.append(durable)
        bucket = unacked if durable else complete
        bucket.setdefault(session, []).append(key)

    for event in events:
        if event.session_dir.parent != root:
            continue
        session, filename = event.session_dir.name, event.filename
        if event.point == "temp-written" and filename is not None:
            pending[(session, filename)] = event.data or b""
        elif event.point == "replaced" and filename is not None:
            add(session, filename, pending.pop((session, filename), None), event.durable)
        elif event.point == "removed":
            if filename is not None:
                add(session, filename, None, event.durable)
            else:
                for key in sorted(k for k in result if k[0] == session):
                    add(session, key[1], None, event.durable)
        elif event.point == "dir-synced":
            # The durable versions of this directory are now on disk.
            complete.setdefault(session, []).extend(unacked.pop(session, []))
        elif event.point == "lock-released":
            for key in complete.pop(session, []):
                result[key].acked = len(result[key].versions) - 1
    return result


def _decode(data: bytes) -> Any:
    try:
        return codec.decode(data)
    except SessionCorruptError:
        return None


def why_lock_is_held(manager: StateManager) -> str | None:
    """None if ``lock(timeout=0)`` succeeds from a fresh thread, else what happened."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with manager.lock(timeout=0):
                pass
        except SessionError as exc:
            outcome.append(f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            outcome.append(f"{type(exc).__name__}: {exc}")
        else:
            outcome.append(None)

    thread = threading.Thread(target=attempt, name="sessionstate-crash-lock-check", daemon=True)
    thread.start()
    thread.join(_CHECK_LOCK_TIMEOUT)
    if thread.is_alive() or not outcome:
        return "lock(timeout=0) did not return"
    return outcome[0]


class StateChecker:
    """Runs the checks on the disk as it is now.

    :param settings: the exploration's settings (its root is checked).
    :param before: the root's snapshot before the run.
    :param events: the run's probe log (up to the crash).
    :param check_acks: whether acknowledged versions must be present; for
        non-durable versions this is skipped when ``power_cut`` is true.
    :param check: the user's consistency check.
    """

    def __init__(
        self,
        settings: Settings,
        before: Tree,
        events: list[ProbeEvent],
        *,
        power_cut: bool,
        check: Check | None,
    ) -> None:
        self.settings = settings.replace(lock_timeout=_CHECK_LOCK_TIMEOUT)
        self.root = settings.root
        self.before = before
        self.power_cut = power_cut
        self.check = check
        self.histories = histories(before, events, self.root)

    def _sessions(self) -> list[str]:
        ids = set(list_sessions(settings=self.settings))
        ids.update(session for session, _ in self.histories)
        return sorted(ids)

    def _first_allowed(self, history: History) -> int:
        """Index of the oldest version the file may still hold."""
        start = history.acked
        if start and self.power_cut and not history.durable[start]:
            return 0  # a non-durable write is not promised to survive a power cut
        return start

    def _check_file(
        self, session: str, filename: str, raw: bytes | None, document: Any
    ) -> Finding | None:
        history = self.histories.get((session, filename), History([None]))
        start = self._first_allowed(history)
        allowed = history.versions[start:]
        for version in allowed:
            if version is None:
                if raw is None:
                    return None
            elif raw is not None and (
                version == raw or (document is not None and _decode(version) == document)
            ):
                return None
        if raw is None:
            found = "the file absent"
        elif document is None:
            found = f"a file that does not parse ({show(raw)})"
        else:
            found = f"the document {show(document)}"
        options = []
        for index, version in enumerate(allowed, start):
            decoded = None if version is None else _decode(version)
            shown = show(version) if version is not None and decoded is None else show(decoded)
            if index == 0:
                options.append(f"the state before the run ({shown})")
            elif index == start:
                options.append(f"the acknowledged version ({shown})")
            else:
                options.append(f"a version written during the run ({shown})")
        expected = " or ".join(dict.fromkeys(options))
        if start:
            expected += " (a version acknowledged before the crash must survive it)"
        return Finding(session, filename, found, expected)

    def run(self) -> tuple[list[Finding], dict[str, dict[str, Any]]]:
        """Check the disk; return the findings and the snapshot of the documents."""
        findings: list[Finding] = []
        snapshot: dict[str, dict[str, Any]] = {}
        all_parse = True
        ready: list[tuple[StateManager, str, Any]] = []
        for session in self._sessions():
            manager = StateManager(session, settings=self.settings)
            present = manager.list_files()
            known = {f for s, f in self.histories if s == session}
            documents: dict[str, Any] = {}
            for filename in sorted(set(present) | known):
                raw: bytes | None = None
                document: Any = None
                if filename in present:
                    raw = (manager.session_dir / filename).read_bytes()
                    try:
                        document = manager.read_json(filename)
                    except SessionError as exc:
                        all_parse = False
                        finding = self._check_file(session, filename, raw, None)
                        if finding is not None:  # (unless it was already so before the run)
                            found = f"a file that does not parse ({show(raw)}: {exc})"
                            findings.append(Finding(session, filename, found, finding.expected))
                        continue
                    documents[filename] = document
                finding = self._check_file(session, filename, raw, document)
                if finding is not None:
                    findings.append(finding)
            temps = [name for name in present if fsops.is_temp_name(name)]
            if temps:
                findings.append(
                    Finding(session, None, f"temp files listed: {temps}", "no temp file listed")
                )
            if not manager.exists():
                continue
            snapshot[session] = documents
            problem = why_lock_is_held(manager)
            if problem is not None:
                findings.append(
                    Finding(session, None, f"the lock not free: {problem}", "the lock free at once")
                )
            elif documents:
                ready.append((manager, min(documents), documents[min(documents)]))
        if self.check is not None and all_parse:
            finding = _run_check(self.check, snapshot)
            if finding is not None:
                findings.append(finding)
        for manager, filename, document in ready:
            finding = _follow_up(manager, filename, document)
            if finding is not None:
                findings.append(finding)
        return findings, snapshot


def _run_check(check: Check, snapshot: Mapping[str, dict[str, Any]]) -> Finding | None:
    copy = json.loads(json.dumps(snapshot))  # the check may not alter the report's snapshot
    expected = "check(snapshot) to hold"
    try:
        result = check(copy)
    except AssertionError as exc:
        found = f"check(snapshot) failed: {_explain(exc)}"
        return Finding(None, None, found, expected)
    except Exception as exc:
        found = f"check(snapshot) raised {_explain(exc)}"
        return Finding(None, None, found, expected)
    if result is False:
        return Finding(None, None, "check(snapshot) returned False", expected)
    return None


#: How far the lines after the first of a multi-line message are indented, so they
#: stay inside the violation's paragraph (``found`` sits at four spaces).
_CONTINUATION = " " * 8


def _explain(exc: BaseException) -> str:
    """``Type: message`` on one paragraph: a multi-line message (pytest's rewritten
    ``assert``) indented under it; for an empty one (a bare ``assert`` outside
    pytest's rewriting), the check's line that raised."""
    message = str(exc).strip()
    if not message:
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            frame = frames[-1]
            where = f"{os.path.basename(frame.filename)}:{frame.lineno}"
            message = f"at {where}: {frame.line}" if frame.line else f"at {where}"
        else:
            message = "(no message)"
    lines = message.splitlines()
    return f"{type(exc).__name__}: " + f"\n{_CONTINUATION}".join(lines)


def _follow_up(manager: StateManager, filename: str, document: Any) -> Finding | None:
    """A following ``update_json`` must succeed and clean up orphaned temp files."""
    expected = "a following update_json to succeed"
    try:
        result = manager.update_json(filename, {})
    except Exception as exc:
        return Finding(
            manager.session_id,
            filename,
            f"update_json raised {type(exc).__name__}: {exc}",
            expected,
        )
    if result != document:
        return Finding(
            manager.session_id,
            filename,
            f"update_json returned {show(result)} over {show(document)}",
            "it to return the document it read",
        )
    with contextlib.suppress(FileNotFoundError), os.scandir(manager.session_dir) as entries:
        temps = sorted(entry.name for entry in entries if fsops.is_temp_name(entry.name))
        if temps:
            return Finding(
                manager.session_id,
                None,
                f"{len(temps)} temp file(s) still in the directory after the next write",
                "the next write to remove temp files orphaned by the crash",
            )
    return None
