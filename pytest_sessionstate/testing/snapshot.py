"""Whole-directory snapshots: take one, and make a directory match one again.

The crash injector restores the session root before every run of its loop, and
the power-loss model writes the disk states it builds, through these two
functions.  A snapshot holds every entry under the root: directories (mode),
regular files (bytes and mode) and symlinks (target); other kinds of entries
(sockets, FIFOs) are left out.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Entry", "Tree", "restore", "take_snapshot"]


@dataclass(frozen=True)
class Entry:
    """One entry of a snapshot.

    :ivar kind: ``"dir"``, ``"file"`` or ``"link"``.
    :ivar mode: permission bits (``dir`` and ``file``).
    :ivar data: the file's bytes (``file``), or the link's target (``link``).
    """

    kind: str
    mode: int = 0
    data: bytes = b""


#: A snapshot: path relative to the root (``/``-separated) -> entry.
Tree = dict[str, Entry]

_WRITE_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_TRUNC
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


def take_snapshot(root: Path) -> Tree:
    """Every entry under ``root`` (not ``root`` itself), never following symlinks.

    An absent root gives an empty snapshot.
    """
    tree: Tree = {}
    pending = [""]
    while pending:
        relative = pending.pop()
        directory = root / relative if relative else root
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            path = f"{relative}/{entry.name}" if relative else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                tree[path] = Entry("link", data=os.fsencode(os.readlink(entry.path)))
            elif stat.S_ISDIR(info.st_mode):
                tree[path] = Entry("dir", stat.S_IMODE(info.st_mode))
                pending.append(path)
            elif stat.S_ISREG(info.st_mode):
                with open(entry.path, "rb") as f:
                    data = f.read()
                tree[path] = Entry("file", stat.S_IMODE(info.st_mode), data)
    return dict(sorted(tree.items()))


def _remove(path: Path, entry: Entry) -> None:
    with contextlib.suppress(FileNotFoundError):
        if entry.kind == "dir":
            os.rmdir(path)
        else:
            os.unlink(path)


def restore(root: Path, tree: Tree) -> None:
    """Make ``root`` hold exactly the entries of ``tree``: same kinds, bytes and modes.

    Entries that already match are left alone (a lock file keeps its inode);
    extra entries are removed, children before their directory.  Nothing is
    fsynced: the restored state only has to be seen by this machine's processes.
    Nobody may hold a lock under ``root`` meanwhile.
    """
    root.mkdir(parents=True, exist_ok=True)
    current = take_snapshot(root)
    for path in sorted(current, reverse=True):  # children sort after their parent
        old, new = current[path], tree.get(path)
        if new is None or new.kind != old.kind or (old.kind == "link" and old != new):
            _remove(root / path, old)
            del current[path]
    for path, want in sorted(tree.items()):
        have = current.get(path)
        target = root / path
        if want.kind == "dir":
            if have is None:
                os.mkdir(target, 0o700)  # its own mode last, once its entries are made
        elif want.kind == "file":
            if have is None or have.data != want.data:
                fd = os.open(target, _WRITE_FLAGS, want.mode)
                with open(fd, "wb", closefd=True) as f:
                    f.write(want.data)
            if have is None or have.mode != want.mode:
                os.chmod(target, want.mode, follow_symlinks=False)
        elif have is None:
            os.symlink(os.fsdecode(want.data), target)
    for path, want in sorted(tree.items(), reverse=True):
        if want.kind == "dir":
            have = current.get(path)
            if have is None or have.mode != want.mode:
                os.chmod(root / path, want.mode)
