"""The check of ``crash.explore(all_or_nothing=True)``: one change across files.

The built-in crash checks judge each file on its own (old document, or one
written during the run).  A target whose writes form one change (pay the order
in one file, empty the cart in another) can pass them all and still leave a
crash state no user should see: one file new, the other old.  This check
compares each crash state as a whole with the state before the run and the
state the complete run leaves: it must be one or the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .. import codec
from ..errors import SessionCorruptError
from ..names import is_valid_name
from .snapshot import Tree

if TYPE_CHECKING:
    from .crash import Violation

__all__ = ["check_all_or_nothing", "documents_of"]

#: {session id: {filename: document}}, as a ``check`` gets it.
Documents = dict[str, dict[str, Any]]

#: Stands for a file absent from a snapshot (``None`` is a JSON value).
_ABSENT = object()

_EXPECTED = (
    "every file as before the run, or every file as the complete run leaves it "
    "(all_or_nothing=True)"
)


def documents_of(tree: Tree) -> Documents:
    """The documents of a root's snapshot, as a check sees them (files that parse)."""
    documents: Documents = {}
    for path, entry in sorted(tree.items()):
        directory, _, name = path.partition("/")
        if not is_valid_name(directory):
            continue
        if not name and entry.kind == "dir":
            documents.setdefault(directory, {})
        elif entry.kind == "file" and "/" not in name and is_valid_name(name):
            try:
                documents.setdefault(directory, {})[name] = codec.decode(entry.data)
            except SessionCorruptError:
                continue
    return documents


def _mixed(old: Documents, new: Documents, state: Documents) -> str:
    """Which changed files ``state`` holds old, new, or neither."""
    keys = sorted({(s, f) for tree in (old, new, state) for s, docs in tree.items() for f in docs})
    parts = []
    for session, filename in keys:
        was = old.get(session, {}).get(filename, _ABSENT)
        will = new.get(session, {}).get(filename, _ABSENT)
        if was == will:
            continue
        value = state.get(session, {}).get(filename, _ABSENT)
        label = "old" if value == was else "new" if value == will else "neither old nor new"
        parts.append(f"{filename} (session {session!r}) {label}")
    return ", ".join(parts)


def check_all_or_nothing(
    violations: Sequence[Violation],
    before: Tree,
    states: Sequence[tuple[Violation, Documents]],
) -> list[Violation]:
    """``violations`` plus one for each crash state that mixes old and new files.

    :param violations: the violations found so far.
    :param before: the root's snapshot before the run.
    :param states: each state checked, as a placeholder :class:`Violation` saying
        where (run, crash, state; ``crash`` None for the complete run) and the
        state's documents.
    :returns: every violation, in run order.
    """
    final = [documents for where, documents in states if where.crash is None]
    found = list(violations)
    if not final:
        return found  # no run completed: there is no "every file new" to compare with
    old, new = documents_of(before), final[0]
    for where, documents in states:
        if where.crash is None or documents in (old, new):
            continue
        found.append(
            dataclasses.replace(
                where,
                found="a mix of old and new files: " + _mixed(old, new, documents),
                expected=_EXPECTED,
                snapshot=documents,
            )
        )
    found.sort(key=lambda violation: violation.run)
    return found
