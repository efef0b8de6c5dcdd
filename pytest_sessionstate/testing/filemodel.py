"""The power-loss model of ``explore_files``: what a power cut may leave of the operations seen.

ALICE (Pillai et al., OSDI'14) showed that applications break at the gap
between "the system call returned" and "the data is on the disk".  This module
records, while the target runs, what each file operation inside the explored
directory did and what an fsync made durable, and then builds the disk states
a power cut at the crash point may leave.

The persistence model (deliberately weaker than ext4's defaults, like ALICE's
"abstract" file system; what POSIX and fsync(2) promise):

* **File data** (writes, truncations, allocations) reaches the disk only when
  the file is fsynced (``fsync``/``fdatasync``; ``sync_file_range`` promises
  nothing).  Data written since the file's last fsync may be lost, entirely
  (the file holds what its last fsync saw; a file created since and never
  fsynced is empty) or torn: a prefix of it, at page granularity (4096 bytes),
  reached the disk.
* **Directory operations** (creating a file, ``mkdir``, ``rename``, ``unlink``,
  ``rmdir``, ``link``, ``symlink``) reach the disk only when their directory is
  fsynced (a rename across directories needs both).  Each one not yet made
  durable may be undone; an operation that needs an undone one (a rename of a
  file whose creation was undone) is then undone too.  Fsyncing a file does not
  make its name durable.
* Only fsync orders operations on different files: losing the data of one file
  and keeping a later rename of another is a state a power cut may leave.

The states built for one crash point, in this order, identical states given
once, at most :data:`MAX_STATES`:

1. every un-fsynced operation lost (data and directory operations);
2. for each directory operation not yet durable: that one undone, the rest kept;
3. for each file with un-fsynced data: that data lost, the rest kept;
4. for each such file more than one page long: its data torn (the first half of
   the changed pages reached the disk);
5. everything reached the disk (the state a SIGKILL leaves).

The choice is deterministic: the same operations give the same states.
Inodes are tracked by (device, inode number), so a file renamed or written
through a descriptor after its rename is followed; the content of a file that
a rename or unlink is about to drop is read before it is dropped.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .fileops import FileOp
from .snapshot import Entry, Tree

__all__ = ["MAX_STATES", "PAGE_SIZE", "PowerCut", "PersistenceRecorder"]

#: The most power-cut states built for one crash point.
MAX_STATES = 16
#: The granularity of a torn write.
PAGE_SIZE = 4096

_DATA_OPS = frozenset(
    (
        "write",
        "pwrite",
        "writev",
        "pwritev",
        "sendfile",
        "copy_file_range",
        "ftruncate",
        "fallocate",
    )
)


@dataclass(frozen=True)
class PowerCut:
    """One state a power cut may leave.

    :ivar label: what was lost, in words.
    :ivar tree: the directory's content in that state.
    """

    label: str
    tree: Tree


@dataclass
class _Inode:
    ident: int
    kind: str  # "file", "dir", "link"
    name: str  # a path it had, for labels
    mode: int = 0o644
    durable: bytes = b""
    final: bytes | None = None
    dirty: bool = False
    dirty_since: int = 0
    data: bytes = b""  # a symlink's target


@dataclass
class _NsOp:
    seq: int
    kind: str  # create, mkdir, unlink, rmdir, rename, link, symlink
    path: str
    target: str | None
    text: str
    inode: int | None = None
    pending_dirs: set[str] = field(default_factory=set)
    valid: bool = True


def _parent(path: str) -> str:
    parent = posixpath.dirname(path)
    return parent or "."


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def tear(durable: bytes, final: bytes) -> bytes | None:
    """The content when the first half of the changed pages reached the disk (None: no tear)."""
    if durable == final:
        return None
    common = min(len(durable), len(final))
    first = next((i for i in range(common) if durable[i] != final[i]), common)
    start = first // PAGE_SIZE
    end = -(-max(len(durable), len(final)) // PAGE_SIZE)
    if end - start < 2:
        return None
    cut = (start + (end - start) // 2) * PAGE_SIZE
    torn = final[:cut] + durable[cut:] if len(durable) > cut else final[:cut]
    return None if torn in (durable, final) else torn


class PersistenceRecorder:
    """Follows one run's operations and builds the power-cut states at its crash.

    :param root: the explored directory (absolute, symlinks resolved), already
        restored to ``initial``.
    :param initial: its snapshot at the start of the run (taken as durable).
    """

    def __init__(self, root: str, initial: Tree) -> None:
        self.root = root
        self._inodes: dict[int, _Inode] = {}
        self._keys: dict[tuple[int, int], int] = {}
        self._namespace: dict[str, int] = {}
        self._ops: list[_NsOp] = []
        self._pending: list[tuple[_NsOp, str]] = []  # creations waiting for their inode
        self._seq = 0
        for path, entry in initial.items():
            absolute = os.path.join(root, path)
            try:
                info = os.lstat(absolute)
            except OSError:
                continue
            inode = self._new_inode(entry.kind, path, stat.S_IMODE(info.st_mode))
            inode.durable = entry.data if entry.kind == "file" else b""
            inode.data = entry.data if entry.kind == "link" else b""
            self._keys[(info.st_dev, info.st_ino)] = inode.ident
            self._namespace[path] = inode.ident

    def _new_inode(self, kind: str, name: str, mode: int) -> _Inode:
        inode = _Inode(len(self._inodes) + 1, kind, name, mode)
        self._inodes[inode.ident] = inode
        return inode

    def _absolute(self, relative: str) -> str:
        return self.root if relative == "." else os.path.join(self.root, relative)

    def _inode_of_key(self, key: tuple[int, int], name: str, absolute: str) -> _Inode:
        ident = self._keys.get(key)
        if ident is not None:
            return self._inodes[ident]
        # A file that came from outside (renamed in): take what it holds now as durable.
        inode = self._new_inode("file", name, 0o644)
        inode.durable = _read(absolute) or b""
        self._keys[key] = inode.ident
        return inode

    def _inode_at(self, absolute: str, relative: str) -> _Inode | None:
        try:
            info = os.lstat(absolute)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return self._inode_of_key((info.st_dev, info.st_ino), relative, absolute)

    def _dirty(self, inode: _Inode) -> None:
        if not inode.dirty:
            inode.dirty = True
            inode.dirty_since = self._seq

    def _ns(self, op: FileOp, kind: str, path: str, target: str | None) -> _NsOp:
        dirs = {_parent(path)}
        if target is not None:
            dirs.add(_parent(target))
        entry = _NsOp(self._seq, kind, path, target, str(op), pending_dirs=dirs)
        self._ops.append(entry)
        return entry

    def settle(self) -> None:
        """Bind the creations of the previous operation to their inodes (it has run now)."""
        for entry, absolute in self._pending:
            try:
                info = os.lstat(absolute)
            except OSError:
                entry.valid = False  # the creation failed
                continue
            if stat.S_ISDIR(info.st_mode):
                kind = "dir"
            elif stat.S_ISLNK(info.st_mode):
                kind = "link"
            else:
                kind = "file"
            inode = self._new_inode(kind, entry.path, stat.S_IMODE(info.st_mode))
            if kind == "link":
                with contextlib.suppress(OSError):
                    inode.data = os.fsencode(os.readlink(absolute))
            self._keys[(info.st_dev, info.st_ino)] = inode.ident
            entry.inode = inode.ident
            if kind == "file":
                self._dirty(inode)  # its (empty) content is not durable either
        self._pending.clear()

    def before(self, op: FileOp) -> None:
        """Record ``op``, which is about to run (the caller is stopped before it)."""
        self.settle()
        self._seq += 1
        name = op.operation
        if name == "open":
            if op.flags & os.O_CREAT and os.path.lexists(op.absolute):
                inode = self._inode_at(op.absolute, op.path)
                if inode is not None and op.flags & os.O_TRUNC:
                    self._dirty(inode)
                return
            if not op.flags & os.O_CREAT and not op.flags & 0o20000000:
                inode = self._inode_at(op.absolute, op.path)
                if inode is not None:
                    self._dirty(inode)
                return
            if op.flags & 0o20000000:
                return  # an unnamed file: only a later link names it
            self._pending.append((self._ns(op, "create", op.path, None), op.absolute))
        elif name in _DATA_OPS:
            if op.key is not None and not op.is_dir:
                self._dirty(self._inode_of_key(op.key, op.path, op.absolute))
        elif name == "truncate":
            inode = self._inode_at(op.absolute, op.path)
            if inode is not None:
                self._dirty(inode)
        elif name in ("fsync", "fdatasync"):
            self._sync(op)
        elif name == "mkdir":
            self._pending.append((self._ns(op, "mkdir", op.path, None), op.absolute))
        elif name == "symlink":
            entry = self._ns(op, "symlink", op.path, None)
            self._pending.append((entry, op.absolute))
        elif name in ("unlink", "rmdir"):
            self._capture(op.absolute)
            self._ns(op, name, op.path, None)
        elif name == "rename" and op.target is not None:
            self._rename(op)
        elif name == "link" and op.target is not None:
            if op.path == "(outside)":
                self._pending.append((self._ns(op, "create", op.target, None), op.absolute_target))
            else:
                self._ns(op, "link", op.path, op.target)

    def _rename(self, op: FileOp) -> None:
        assert op.target is not None
        if op.path == "(outside)":  # moved in: a creation of the target name
            self._capture(op.absolute_target)
            self._pending.append((self._ns(op, "create", op.target, None), op.absolute_target))
            return
        if op.target == "(outside)":  # moved out: an unlink
            self._capture(op.absolute)
            self._ns(op, "unlink", op.path, None)
            return
        self._capture(op.absolute_target)
        self._capture(op.absolute)
        kind = "exchange" if op.detail == "exchange" else "rename"
        self._ns(op, kind, op.path, op.target)

    def _capture(self, absolute: str) -> None:
        """Read the content of a file a rename or unlink is about to drop (or move)."""
        inode = self._inode_at(absolute, self._relative(absolute))
        if inode is not None:
            inode.final = _read(absolute)

    def _relative(self, absolute: str) -> str:
        if absolute == self.root:
            return "."
        return absolute[len(self.root) + 1 :]

    def _sync(self, op: FileOp) -> None:
        if op.key is None:
            return
        if op.is_dir:
            for entry in self._ops:
                entry.pending_dirs.discard(op.path)
            return
        inode = self._inode_of_key(op.key, op.path, op.absolute)
        content = _read(f"/proc/{op.pid}/fd/{op.fd}")
        if content is None:
            content = _read(op.absolute)
        if content is not None:
            inode.durable = content
            inode.dirty = False

    # -- the states -----------------------------------------------------------

    def _finish(self, crashed: Tree) -> None:
        """Take the content of every inode still linked from the crashed directory."""
        self.settle()
        for path, entry in crashed.items():
            absolute = os.path.join(self.root, path)
            try:
                info = os.lstat(absolute)
            except OSError:
                continue
            ident = self._keys.get((info.st_dev, info.st_ino))
            if ident is None:
                continue
            inode = self._inodes[ident]
            inode.mode = entry.mode or inode.mode
            if entry.kind == "file":
                inode.final = entry.data

    def states(self, crashed: Tree, *, limit: int = MAX_STATES) -> list[PowerCut]:
        """The power-cut states at this moment (the caller killed, ``crashed`` its directory)."""
        self._finish(crashed)
        pending = [op for op in self._ops if op.valid and op.pending_dirs]
        dirty = sorted(
            (inode for inode in self._inodes.values() if inode.kind == "file" and inode.dirty),
            key=lambda inode: (inode.dirty_since, inode.ident),
        )
        plans: list[tuple[str, set[int], dict[int, str]]] = []
        if pending or dirty:
            plans.append(
                (
                    "every un-fsynced operation lost",
                    {op.seq for op in pending},
                    {inode.ident: "lost" for inode in dirty},
                )
            )
        for op in pending:
            where = " and ".join(sorted(op.pending_dirs))
            plans.append((f"{op.text} undone (directory {where!r} not fsynced)", {op.seq}, {}))
        for inode in dirty:
            plans.append(
                (f"the un-fsynced data of {inode.name!r} lost", set(), {inode.ident: "lost"})
            )
        for inode in dirty:
            if tear(inode.durable, self._final(inode)) is not None:
                label = f"the un-fsynced data of {inode.name!r} torn (half its changed pages)"
                plans.append((label, set(), {inode.ident: "torn"}))
        plans.append(("every operation reached the disk", set(), {}))
        seen: list[Tree] = []
        result: list[PowerCut] = []
        for label, undone, data in plans:
            tree = self._build(undone, data)
            if tree in seen:
                continue
            seen.append(tree)
            result.append(PowerCut(label, tree))
            if len(result) >= limit:
                break
        return result

    def _final(self, inode: _Inode) -> bytes:
        return inode.durable if inode.final is None else inode.final

    def _content(self, inode: _Inode, choice: str | None) -> bytes:
        if choice == "lost":
            return inode.durable
        final = self._final(inode)
        if choice == "torn":
            torn = tear(inode.durable, final)
            return final if torn is None else torn
        return final

    def _build(self, undone: set[int], data: dict[int, str]) -> Tree:
        names = dict(self._namespace)
        for op in self._ops:
            if not op.valid or op.seq in undone:
                continue
            _apply(names, op)
        tree: Tree = {}
        for path in sorted(names):
            inode = self._inodes[names[path]]
            if inode.kind == "dir":
                tree[path] = Entry("dir", inode.mode)
            elif inode.kind == "link":
                tree[path] = Entry("link", data=inode.data)
            else:
                tree[path] = Entry("file", inode.mode, self._content(inode, data.get(inode.ident)))
        return tree


def _parent_exists(names: dict[str, int], path: str) -> bool:
    parent = _parent(path)
    return parent == "." or parent in names


def _subtree(names: dict[str, int], path: str) -> list[str]:
    prefix = path + "/"
    return [name for name in names if name == path or name.startswith(prefix)]


def _apply(names: dict[str, int], op: _NsOp) -> None:
    """Apply one directory operation to a namespace; one that cannot apply is skipped."""
    if op.kind in ("create", "mkdir", "symlink"):
        if op.inode is not None and _parent_exists(names, op.path) and op.path not in names:
            names[op.path] = op.inode
    elif op.kind == "unlink":
        names.pop(op.path, None)
    elif op.kind == "rmdir":
        if op.path in names and len(_subtree(names, op.path)) == 1:
            del names[op.path]
    elif op.kind == "link" and op.target is not None:
        if op.path in names and _parent_exists(names, op.target) and op.target not in names:
            names[op.target] = names[op.path]
    elif op.kind in ("rename", "exchange") and op.target is not None:
        source, target = op.path, op.target
        if source not in names or not _parent_exists(names, target) or source == target:
            return
        if op.kind == "exchange":
            if target in names:
                names[source], names[target] = names[target], names[source]
            return
        moved = {name: names.pop(name) for name in _subtree(names, source)}
        for name in _subtree(names, target):
            del names[name]
        for name, ident in moved.items():
            names[target + name[len(source) :]] = ident


def describe_files(path: Path, *, limit: int = 120) -> list[str]:
    """One line per entry under ``path``: its kind, size and the start of its content."""
    lines = []
    try:
        from .snapshot import take_snapshot

        tree = take_snapshot(path)
    except OSError as exc:
        return [f"(unreadable: {exc})"]
    for name, entry in tree.items():
        if entry.kind == "dir":
            lines.append(f"{name}/")
        elif entry.kind == "link":
            lines.append(f"{name} -> {os.fsdecode(entry.data)}")
        else:
            shown = entry.data[:limit]
            more = "..." if len(entry.data) > limit else ""
            lines.append(f"{name} ({len(entry.data)} bytes): {shown!r}{more}")
    return lines or ["(empty)"]
