"""Shared plumbing of the benchmark scripts: arguments, statistics, tables, machine notes.

The scripts are plain programs (``python benchmarks/bench_<name>.py``), not tests:
they print figures, they never assert on timings.  Every script runs its
baselines and the project's code in the same process run, in interleaved
rounds (baseline, project, baseline, project... with the order flipped every
round) so that drift in the machine's load hits every variant alike, and
reports the median over the rounds.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Table",
    "filesystem_of",
    "interleaved_order",
    "machine_note",
    "make_parser",
    "median",
    "percentile",
    "scratch_dir",
    "verdict",
]


def make_parser(description: str, *, rounds: int, quick_rounds: int) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a short run (fewer rounds, smaller loops)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"rounds per variant (default {rounds}, {quick_rounds} with --quick)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where to put the scratch files (default: the system temp dir); use a real disk",
    )
    parser.add_argument(
        "--format",
        choices=("md", "rst"),
        default="md",
        help="table format: Markdown (default) or reStructuredText",
    )
    parser.set_defaults(default_rounds=rounds, quick_rounds=quick_rounds)
    return parser


def rounds_of(args: argparse.Namespace) -> int:
    """The number of rounds asked for."""
    if args.rounds is not None:
        return max(1, int(args.rounds))
    return int(args.quick_rounds if args.quick else args.default_rounds)


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), nearest-rank method (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def interleaved_order(names: Sequence[str], round_index: int) -> list[str]:
    """The order to run the variants in, in round ``round_index``: flipped every round."""
    order = list(names)
    return order if round_index % 2 == 0 else order[::-1]


def filesystem_of(path: Path) -> str:
    """The filesystem type that holds ``path`` (from /proc/mounts; "?" if unknown)."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "?"
    target = str(path.resolve())
    best, kind = "", "?"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fields[2]
    return kind


def scratch_dir(base: Path | None, prefix: str) -> Path:
    """A fresh scratch directory (under ``base`` if given)."""
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def machine_note(extra: str = "") -> str:
    """One line about the machine: Python, CPUs, load average (to judge the noise)."""
    try:
        load = "load avg {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        load = "load avg ?"
    parts = [
        f"Python {platform.python_version()}",
        f"{platform.system()} {platform.machine()}",
        f"{os.cpu_count()} CPUs",
        load,
        time.strftime("%Y-%m-%d %H:%M:%S"),
    ]
    if extra:
        parts.append(extra)
    return " | ".join(parts)


def verdict(ok: bool) -> str:
    """How a goal line reads."""
    return "MET" if ok else "MISSED"


class Table:
    """A table printed as Markdown or reStructuredText.

    :param headers: the column titles.
    """

    def __init__(self, headers: Sequence[str]) -> None:
        self.headers = list(headers)
        self.rows: list[list[str]] = []

    def add(self, *cells: Any) -> None:
        """Add a row (cells are turned into strings)."""
        self.rows.append([str(cell) for cell in cells])

    def render(self, fmt: str = "md") -> str:
        """The table as text, ``fmt`` "md" or "rst"."""
        widths = [
            max(len(self.headers[i]), *(len(row[i]) for row in self.rows))
            for i in range(len(self.headers))
        ]

        def line(cells: Sequence[str]) -> str:
            return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=False))

        def line_cells(cells: Sequence[str]) -> list[str]:
            return [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]

        if fmt == "rst":
            rule = "  ".join("=" * width for width in widths)
            body = ["  ".join(line_cells(row)).rstrip() for row in self.rows]
            head = "  ".join(line_cells(self.headers)).rstrip()
            return "\n".join([rule, head, rule, *body, rule])
        out = ["| " + line(self.headers) + " |"]
        out.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
        out.extend("| " + line(row) + " |" for row in self.rows)
        return "\n".join(out)


def ms(seconds: float) -> str:
    """Seconds shown as milliseconds."""
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.3g} ms" if seconds < 0.01 else f"{seconds * 1000:.1f} ms"


def ratio(value: float, base: float) -> str:
    """``value / base`` shown as "1.23x"."""
    if not base or math.isnan(value) or math.isnan(base):
        return "-"
    return f"{value / base:.2f}x"


def run_timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn()`` took on the perf counter."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def header(title: str, args: argparse.Namespace, extra: str = "") -> None:
    """Print the benchmark's title and the machine line."""
    print(f"## {title}")
    print(machine_note(extra))
    print(f"rounds: {rounds_of(args)}{' (quick)' if args.quick else ''}")
    sys.stdout.flush()
