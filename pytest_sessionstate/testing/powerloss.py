"""The persistence model: which disk states a power cut at a given moment may leave.

In the spirit of ALICE (OSDI'14) and SQLite's crash-test VFS.  The input is the
root's snapshot before the run and the probe log up to the crash; the output is
the list of states the disk may be found in after the power comes back.  The
model knows only what the probe log says happened, and treats every step the
way POSIX promises it, not the way a friendly filesystem happens to behave.

What is volatile (may be lost):

* **File data** written but not fsynced (``temp-written`` with no
  ``temp-synced`` of that file after it).  Such a file may come back with its
  data *kept*, *empty* (size 0: the size was never committed, as on ext4 with
  delayed allocation), *torn* (the first half of the bytes: a prefix of the
  pages reached the disk) or *zero-filled* (the size was committed, the data
  blocks were not: the "NUL bytes" files of XFS and ext4 ``data=writeback``).
* **Directory entries** created, renamed or removed in a directory that was not
  fsynced afterwards: ``temp-created`` (the temp file's entry), ``replaced``
  (the rename), ``removed`` (an unlink, or a whole session directory), and
  ``dir-created`` when it was not durable.  Such operations may be undone.

What is durable (always kept):

* What was in the root before the run.
* File data after ``temp-synced`` (an ``fsync`` of the file).
* Every entry operation of a directory that precedes a ``dir-synced`` of that
  directory (an ``fsync`` of the directory; ``dir-synced`` after a whole
  session is removed syncs the root), and a session directory whose
  ``dir-created`` was durable (the root was fsynced right after ``mkdir``).

How volatile operations combine:

* Entry operations of one directory persist **in order**: the state keeps a
  prefix of the directory's un-synced operations (journaling filesystems,
  ext4, XFS and btrfs, commit metadata in order).  Different directories are
  independent.  Undoing a session directory's creation removes everything in it.
* File data is independent of metadata: a rename may persist while the renamed
  file's data is lost (the classic empty-file-after-crash bug).
* Every combination is built: the product of the prefixes of every directory,
  times, for each such state, the product of the data outcomes of every file
  that state shows under a session filename (temp files are invisible to
  readers, their data is kept).  States are deduplicated and come in a fixed
  order, the "everything kept" state first.  Should a run produce more than
  :data:`MAX_COMBINATIONS` combinations of either kind, the model varies one
  directory (or one file) at a time, keeping the others whole.

Faithfulness: the model is what POSIX and the Linux ``fsync(2)`` page promise,
and what ext4 (``data=ordered`` and ``data=writeback``), XFS and btrfs may
actually leave.  It is pessimistic for ext4's ``auto_da_alloc`` (which flushes
the data of a file renamed over an existing one), and does not model
filesystems that reorder metadata within a directory, garble bytes in place
(a torn sector inside a synced file) or lose fsynced data (lying disks); nor
does it model ``lock-*`` files (a lock file lost with power is simply made
again on the next ``lock()``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..fsops import DIR_MODE, FILE_MODE, LOCK_NAME
from ..names import is_session_file
from ..probes import ProbeEvent
from .snapshot import Entry, Tree

__all__ = ["DATA_OUTCOMES", "MAX_COMBINATIONS", "PowerCutState", "power_cut_states"]

#: What may become of a file's un-fsynced data, in the order the states are built.
DATA_OUTCOMES: tuple[str, ...] = ("kept", "empty", "torn", "zeroed")
#: Above this many combinations (of directory prefixes, or of data outcomes), vary
#: one directory or one file at a time.
MAX_COMBINATIONS = 256

#: What the state manager creates: its modes and its lock file's name.
_NEW_FILE_MODE = FILE_MODE
_NEW_DIR_MODE = DIR_MODE
_LOCK_NAME = LOCK_NAME


@dataclass(frozen=True)
class PowerCutState:
    """One disk state a power cut may leave.

    :ivar label: what was lost, readable ("every operation reached the disk" when
        nothing was).
    :ivar tree: the root's content in that state.
    """

    label: str
    tree: Tree


@dataclass(eq=False)
class _Inode:
    data: bytes
    mode: int
    synced: bool


@dataclass(frozen=True)
class _Op:
    """An entry operation in ``directory`` ("" for the root)."""

    directory: str
    kind: str  # create | rename | unlink | mkdir | rmtree
    name: str
    new_name: str = ""
    inode: _Inode | None = field(default=None, compare=False)
    filename: str = ""  # the session file it concerns (for labels)

    def describe(self) -> str:
        if self.kind == "create":
            return f"the creation of a temp file for {self.filename}"
        if self.kind == "rename":
            return f"the rename of the new {self.filename} into place"
        if self.kind == "unlink":
            return f"the removal of {self.name}"
        if self.kind == "mkdir":
            return f"the creation of session {self.name!r}"
        return f"the removal of session {self.name!r}"


_Node = _Inode | Entry


class _Model:
    """The operations of the log, replayed on the snapshot taken before the run."""

    def __init__(self, before: Tree, root: Path) -> None:
        self.root = root
        self.base: dict[str, _Node] = {}
        for path, entry in before.items():
            if entry.kind == "file":
                self.base[path] = _Inode(entry.data, entry.mode, synced=True)
            else:
                self.base[path] = entry
        self.now: dict[str, _Node] = dict(self.base)
        self.ops: list[_Op] = []
        self.synced: dict[str, int] = {}  # directory -> how many of its ops are durable

    def _relative(self, directory: Path) -> str | None:
        if directory.parent != self.root:
            return None  # outside the root: not ours to model
        return directory.name

    def _ops_of(self, directory: str) -> list[_Op]:
        return [op for op in self.ops if op.directory == directory]

    def _add(self, op: _Op) -> None:
        self.ops.append(op)
        _apply(self.now, op)

    def _sync(self, directory: str) -> None:
        self.synced[directory] = len(self._ops_of(directory))

    def feed(self, event: ProbeEvent) -> None:
        session = self._relative(event.session_dir)
        if session is None:
            return
        point, filename = event.point, event.filename or ""
        if point == "dir-created":
            self._add(_Op("", "mkdir", session))
            if event.durable:
                self._sync("")
        elif point == "temp-created" and event.temp is not None:
            current = self.now.get(f"{session}/{filename}")
            mode = current.mode if isinstance(current, _Inode) else _NEW_FILE_MODE
            inode = _Inode(b"", mode, synced=True)
            self._add(_Op(session, "create", event.temp.name, inode=inode, filename=filename))
        elif point == "temp-written" and event.temp is not None:
            node = self.now.get(f"{session}/{event.temp.name}")
            if isinstance(node, _Inode):
                node.data = event.data or b""
                node.synced = not node.data
        elif point == "temp-synced" and event.temp is not None:
            node = self.now.get(f"{session}/{event.temp.name}")
            if isinstance(node, _Inode):
                node.synced = True
        elif point == "replaced" and event.temp is not None:
            self._add(_Op(session, "rename", event.temp.name, filename, filename=filename))
        elif point == "removed":
            if event.filename is None:
                self._add(_Op("", "rmtree", session))
            else:
                self._add(_Op(session, "unlink", filename, filename=filename))
        elif point == "dir-synced":
            self._sync("" if event.filename is None else session)

    def prefix_choices(self) -> list[dict[str, int]]:
        """Per directory with un-synced operations, how many of them persist."""
        directories = sorted({op.directory for op in self.ops})
        ranges: list[tuple[str, list[int]]] = []
        for directory in directories:
            total = len(self._ops_of(directory))
            durable = self.synced.get(directory, 0)
            if durable < total:
                ranges.append((directory, list(range(total, durable - 1, -1))))
        full = {d: len(self._ops_of(d)) for d in directories}
        return [
            {**full, **choice} for choice in _combinations([(d, options) for d, options in ranges])
        ]

    def build(self, prefixes: dict[str, int]) -> tuple[dict[str, _Node], list[str]]:
        """The namespace with each directory's first ``prefixes[d]`` operations applied."""
        namespace = dict(self.base)
        seen: dict[str, int] = {}
        for op in self.ops:
            index = seen.get(op.directory, 0)
            seen[op.directory] = index + 1
            if index < prefixes.get(op.directory, 0):
                _apply(namespace, op)
        # Entries whose directory did not persist are gone with it.
        namespace = {
            path: node for path, node in namespace.items() if _parents_exist(namespace, path)
        }
        lost: list[str] = []
        for directory in sorted(prefixes):
            undone = self._ops_of(directory)[prefixes[directory] :]
            if undone:
                where = "the root" if not directory else f"session {directory!r}"
                lost.append(f"in {where}, undone: " + ", ".join(op.describe() for op in undone))
        return namespace, lost


def _apply(namespace: dict[str, _Node], op: _Op) -> None:
    prefix = f"{op.directory}/" if op.directory else ""
    if op.kind == "create" and op.inode is not None:
        namespace[prefix + op.name] = op.inode
    elif op.kind == "rename":
        node = namespace.pop(prefix + op.name, None)
        if node is not None:
            namespace[prefix + op.new_name] = node
    elif op.kind == "unlink":
        namespace.pop(prefix + op.name, None)
    elif op.kind == "mkdir":
        namespace[op.name] = Entry("dir", _NEW_DIR_MODE)
        namespace[f"{op.name}/{_LOCK_NAME}"] = _Inode(b"", _NEW_FILE_MODE, synced=True)
    elif op.kind == "rmtree":
        inside = f"{op.name}/"
        for path in [p for p in namespace if p == op.name or p.startswith(inside)]:
            del namespace[path]


def _parents_exist(namespace: dict[str, _Node], path: str) -> bool:
    parent = path.rpartition("/")[0]
    while parent:
        node = namespace.get(parent)
        if not isinstance(node, Entry) or node.kind != "dir":
            return False
        parent = parent.rpartition("/")[0]
    return True


def _combinations(choices: Sequence[tuple[str, Sequence[int]]]) -> list[dict[str, int]]:
    """The product of the choices, or one key at a time (others at their first option)
    when the product exceeds :data:`MAX_COMBINATIONS`."""
    total = 1
    for _, options in choices:
        total *= len(options)
    if total <= MAX_COMBINATIONS:
        keys = [key for key, _ in choices]
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(options for _, options in choices))
        ]
    first = {key: options[0] for key, options in choices}
    result = [dict(first)]
    for key, options in choices:
        for option in options[1:]:
            result.append({**first, key: option})
    return result


def _lose(data: bytes, outcome: str) -> bytes:
    if outcome == "empty":
        return b""
    if outcome == "torn":
        return data[: len(data) // 2]
    if outcome == "zeroed":
        return bytes(len(data))
    return data


def _describe_loss(path: str, data: bytes, outcome: str) -> str:
    session, _, filename = path.partition("/")
    what = {
        "empty": "the file is empty",
        "torn": f"only its first {len(data) // 2} of {len(data)} bytes reached the disk",
        "zeroed": f"its {len(data)} bytes read back as zeros",
    }[outcome]
    return f"un-fsynced data of {filename} in session {session!r} lost: {what}"


def _is_session_file(path: str) -> bool:
    session, _, filename = path.partition("/")
    return is_session_file(session, filename)


def power_cut_states(
    before: Tree, events: Iterable[ProbeEvent], root: Path | str
) -> list[PowerCutState]:
    """Every disk state a power cut right after the last of ``events`` may leave.

    :param before: the root's snapshot before the run.
    :param events: the probe log of the run, up to and including the crash.
    :param root: the session root the events' session directories are in.
    :returns: the states, deduplicated, "everything kept" first.
    """
    model = _Model(before, Path(os.path.abspath(root)))
    for event in events:
        model.feed(event)
    states: list[PowerCutState] = []
    seen: set[tuple[tuple[str, Entry], ...]] = set()
    for prefixes in model.prefix_choices():
        namespace, lost_entries = model.build(prefixes)
        volatile = sorted(
            path
            for path, node in namespace.items()
            if isinstance(node, _Inode) and not node.synced and _is_session_file(path)
        )
        data_choices = _combinations([(path, list(range(len(DATA_OUTCOMES)))) for path in volatile])
        for outcomes in data_choices:
            tree: Tree = {}
            lost = list(lost_entries)
            for path, node in namespace.items():
                if isinstance(node, Entry):
                    tree[path] = node
                    continue
                outcome = DATA_OUTCOMES[outcomes.get(path, 0)]
                if outcome != "kept":
                    lost.append(_describe_loss(path, node.data, outcome))
                tree[path] = Entry("file", node.mode, _lose(node.data, outcome))
            tree = dict(sorted(tree.items()))
            key = tuple(tree.items())
            if key in seen:
                continue
            seen.add(key)
            label = "; ".join(lost) if lost else "every operation reached the disk"
            states.append(PowerCutState(f"power cut: {label}", tree))
    return states
