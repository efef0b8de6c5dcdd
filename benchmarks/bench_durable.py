"""Durable writes: one process, ``transaction`` on a 50-key document, per-operation time.

Variants, each in its own directory of the same filesystem, interleaved
operation by operation (so a burst of disk activity from elsewhere hits them
alike):

* ``bare``: the bare durable protocol, no lock, nothing else: read, parse,
  change, serialise, write a temp file, fsync it, rename it over the document,
  fsync the directory.  The goal's yardstick.
* ``project``: ``StateManager.transaction`` with the default (durable) settings:
  the same protocol plus the session lock, strict validation, indented output,
  orphan clean-up and the mode check.
* ``original``: the original code's ``update_json`` (touch lock, ``json.load``,
  ``json.dump(indent=2, default=str)``, rename, unlink): no fsync at all, so not
  durable; shown for scale only.

Run it on a real disk, not tmpfs (where fsync costs nothing): ``--dir`` picks
the place; the script prints the filesystem type it found.

Goal (issue #3): project <= 1.3x bare per operation.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # _common, and this checkout's package

from _common import (  # noqa: E402
    Table,
    filesystem_of,
    header,
    interleaved_order,
    make_parser,
    median,
    ms,
    ratio,
    rounds_of,
    scratch_dir,
    verdict,
)
from _original import OriginalStateManager  # noqa: E402

from pytest_sessionstate import Settings, StateManager  # noqa: E402

DOC = "doc.json"


def start_document() -> dict[str, object]:
    """50 keys of small values, like a session's bookkeeping."""
    doc: dict[str, object] = {}
    for i in range(50):
        kind = i % 5
        key = f"key_{i:02d}"
        if kind == 0:
            doc[key] = i
        elif kind == 1:
            doc[key] = f"value number {i}"
        elif kind == 2:
            doc[key] = i % 2 == 0
        elif kind == 3:
            doc[key] = {"step": i, "status": "pending"}
        else:
            doc[key] = [i, i + 1, i + 2]
    doc["key_00"] = 0
    return doc


def make_bare(directory: Path) -> Callable[[], None]:
    path = os.path.join(directory, DOC)
    temp = os.path.join(directory, f".{DOC}.bare.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC

    def op() -> None:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
        doc["key_00"] += 1
        data = json.dumps(doc).encode("utf-8")
        fd = os.open(temp, flags, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    return op


def make_project(directory: Path) -> Callable[[], None]:
    manager = StateManager(directory.name, settings=Settings(directory.parent, durable=True))

    def op() -> None:
        with manager.transaction(DOC) as doc:
            doc["key_00"] += 1

    return op


def make_original(directory: Path) -> Callable[[], None]:
    original = OriginalStateManager(directory)

    def op() -> None:
        original.increment(DOC, "key_00")

    return op


VARIANTS: dict[str, Callable[[Path], Callable[[], None]]] = {
    "bare": make_bare,
    "project": make_project,
    "original": make_original,
}

LABELS = {
    "bare": "bare durable protocol (read, parse, temp, fsync, rename, fsync dir)",
    "project": "project: transaction(), durable=True",
    "original": "original code (no fsync: NOT durable; for scale)",
}


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], rounds=5, quick_rounds=2)
    parser.add_argument(
        "--ops", type=int, default=None, help="operations per variant per round (default 200)"
    )
    args = parser.parse_args(argv)
    ops = args.ops or (40 if args.quick else 200)
    root = scratch_dir(args.dir, "bench-durable-")
    fs = filesystem_of(root)
    header(
        "Durable single-process transaction on a 50-key document",
        args,
        f"scratch dir {root} on {fs}",
    )
    if fs in {"tmpfs", "ramfs"}:
        print("WARNING: the scratch dir is in memory: fsync costs nothing there; use --dir")
    names = list(VARIANTS)
    doc = start_document()
    ops_of = {}
    for name in names:
        directory = root / name
        directory.mkdir(mode=0o700)
        (directory / DOC).write_text(json.dumps(doc, indent=2), encoding="utf-8")
        ops_of[name] = VARIANTS[name](directory)
        for _ in range(5):  # warm up: caches, first file creation, imports
            ops_of[name]()
    per_round: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for index in range(rounds_of(args)):
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(ops):
            for name in interleaved_order(names, index + i):
                op = ops_of[name]
                start = clock()
                op()
                times[name].append(clock() - start)
        for name in names:
            per_round[name].append(median(times[name]))
        print(
            f"round {index + 1}: " + ", ".join(f"{n} {ms(per_round[n][-1])}" for n in names),
            flush=True,
        )
    final = {name: json.loads((root / name / DOC).read_text())["key_00"] for name in names}
    expected = 5 + rounds_of(args) * ops
    if any(value != expected for value in final.values()):
        raise RuntimeError(f"lost updates: {final}, expected {expected} each")

    summary = {name: median(values) for name, values in per_round.items()}
    table = Table(["variant", "per op (median)", "vs bare durable"])
    for name in names:
        table.add(LABELS[name], ms(summary[name]), ratio(summary[name], summary["bare"]))
    print()
    print("Medians over the rounds of the per-operation medians:")
    print(table.render(args.format))
    print()
    factor = summary["project"] / summary["bare"]
    print(f"goal project <= 1.30x bare durable: {factor:.2f}x {verdict(factor <= 1.3)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
