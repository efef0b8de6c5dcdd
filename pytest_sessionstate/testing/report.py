"""The ``sessionstate`` section of a failing test's report.

When a test that used the plugin's fixtures fails, the person reading the
failure should see the state the test left without rerunning it.  This module
renders each root the test touched: its sessions, their files and the files'
contents, cut to a bounded size so a huge document cannot drown the report.

Limits (documented in ``docs/fixtures.rst``):

- :data:`MAX_FILE_CHARS` characters of each file's content are shown;
- :data:`MAX_SESSIONS` sessions per root and :data:`MAX_FILES` files per session
  are listed; the rest are counted.

Files are read as raw bytes, without the session lock and without the probe
seam: rendering a report never waits for a lock, never trips a crash injector,
and shows a corrupt file as it is on disk.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fsops import is_temp_name
from ..names import is_valid_name

if TYPE_CHECKING:
    from .crash import CrashInjector, Violation

__all__ = [
    "MAX_FILES",
    "MAX_FILE_CHARS",
    "MAX_SESSIONS",
    "SECTION_NAME",
    "render",
    "render_crash",
]

#: The report section's title, as pytest prints it: ``---- sessionstate ----``.
SECTION_NAME = "sessionstate"
#: Characters of each file's content shown; the rest is cut and counted.
MAX_FILE_CHARS = 2000
#: Sessions listed per root.
MAX_SESSIONS = 20
#: Files listed per session.
MAX_FILES = 20

_INDENT = "    "


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def _file_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [f"  {path.name}: unreadable ({exc.strerror or exc})"]
    text = data.decode("utf-8", errors="replace")
    header = f"  {path.name} ({len(data)} bytes)"
    if len(text) > MAX_FILE_CHARS:
        cut = len(text) - MAX_FILE_CHARS
        text = text[:MAX_FILE_CHARS]
        header += f", first {MAX_FILE_CHARS} characters"
        tail = [f"{_INDENT}[... {cut} more characters]"]
    else:
        tail = []
    lines = [header + ":"]
    lines.extend(_INDENT + line for line in text.rstrip("\n").splitlines() or [""])
    lines.extend(tail)
    return lines


def _session_lines(session_dir: Path) -> list[str]:
    try:
        entries = _entries(session_dir)
    except OSError as exc:
        return [f"session {session_dir.name!r}: unreadable ({exc.strerror or exc})"]
    files = [e for e in entries if e.is_file(follow_symlinks=False) and is_valid_name(e.name)]
    temps = [e.name for e in entries if is_temp_name(e.name)]
    noun = "file" if len(files) == 1 else "files"
    lines = [f"session {session_dir.name!r} ({len(files)} {noun})"]
    for entry in files[:MAX_FILES]:
        lines.extend(_file_lines(Path(entry.path)))
    if len(files) > MAX_FILES:
        lines.append(f"  [... {len(files) - MAX_FILES} more files]")
    if temps:
        lines.append(f"  leftover temp files: {', '.join(temps)}")
    return lines


def _root_lines(root: Path, label: str) -> list[str]:
    header = f"{label}: {root}"
    try:
        entries = _entries(root)
    except FileNotFoundError:
        return [f"{header} (does not exist)"]
    except OSError as exc:
        return [f"{header} (unreadable: {exc.strerror or exc})"]
    sessions = [e for e in entries if e.is_dir(follow_symlinks=False) and is_valid_name(e.name)]
    if not sessions:
        return [f"{header} (no sessions)"]
    noun = "session" if len(sessions) == 1 else "sessions"
    lines = [f"{header} ({len(sessions)} {noun})"]
    for entry in sessions[:MAX_SESSIONS]:
        lines.extend(_INDENT + line for line in _session_lines(Path(entry.path)))
    if len(sessions) > MAX_SESSIONS:
        lines.append(f"{_INDENT}[... {len(sessions) - MAX_SESSIONS} more sessions]")
    return lines


def render(roots: Iterable[tuple[Path, str]]) -> str:
    """The report section's text for ``(root, label)`` pairs, one block per root.

    Never raises for what it finds on disk: a missing root, an unreadable file or
    a corrupt document is described, not fatal.
    """
    blocks = ["\n".join(_root_lines(Path(root), label)) for root, label in roots]
    return "\n\n".join(blocks) + "\n"


def _document_lines(filename: str, document: Any) -> list[str]:
    text = json.dumps(document, indent=2, ensure_ascii=False)
    header = f"  {filename}"
    tail: list[str] = []
    if len(text) > MAX_FILE_CHARS:
        tail = [f"{_INDENT}[... {len(text) - MAX_FILE_CHARS} more characters]"]
        text = text[:MAX_FILE_CHARS]
        header += f", first {MAX_FILE_CHARS} characters"
    return [header + ":", *(_INDENT + line for line in text.splitlines()), *tail]


def _violation_lines(mode: str, runs: int, count: int, violation: Violation) -> list[str]:
    noun = "violation" if count == 1 else "violations"
    lines = [
        f"crash.explore (mode {mode!r}, {runs} runs, {count} {noun}): the state of the "
        "first violation (the root itself was restored after the exploration)"
    ]
    lines.extend(
        line for line in violation.description.splitlines() if not line.startswith("    snapshot: ")
    )
    sessions = sorted(violation.snapshot.items())
    if not sessions:
        lines.append(f"{_INDENT}(no sessions)")
    for session_id, documents in sessions[:MAX_SESSIONS]:
        noun = "file" if len(documents) == 1 else "files"
        lines.append(f"{_INDENT}session {session_id!r} ({len(documents)} {noun} that parsed)")
        for filename, document in sorted(documents.items())[:MAX_FILES]:
            lines.extend(_INDENT + line for line in _document_lines(filename, document))
        if len(documents) > MAX_FILES:
            lines.append(f"{_INDENT}  [... {len(documents) - MAX_FILES} more files]")
    if len(sessions) > MAX_SESSIONS:
        lines.append(f"{_INDENT}[... {len(sessions) - MAX_SESSIONS} more sessions]")
    return lines


def render_crash(injectors: Iterable[CrashInjector]) -> str:
    """The state behind the first violation of each failed exploration of ``injectors``.

    ``crash.explore`` restores the root when it is done, so the root's own block
    shows the state before the exploration; this shows the one that failed a check
    (the documents that parsed; the violation says what did not).  Empty if no
    exploration found a violation.
    """
    blocks = []
    for injector in injectors:
        for report in injector.reports:
            if report.violations:
                lines = _violation_lines(
                    report.mode, report.runs, len(report.violations), report.violations[0]
                )
                blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n" if blocks else ""
