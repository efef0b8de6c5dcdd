"""Run every benchmark of issue #3, one after the other, and print their tables.

    python benchmarks/run_all.py            # the full run (several minutes)
    python benchmarks/run_all.py --quick    # a short run, to check that all work
    python benchmarks/run_all.py --format rst --output figures.txt

Options other than ``--output`` are passed on to every script (``--quick``,
``--rounds N``, ``--dir PATH``, ``--format md|rst``).  Each script runs in its
own process, so one's imports and caches do not flatter the next.  The exit
status is that of the first script that failed (a missed goal is not a failure:
these scripts report, they do not assert).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

SCRIPTS = (
    "bench_contention.py",
    "bench_durable.py",
    "bench_large_document.py",
    "bench_import.py",
    "bench_crash_explore.py",
    "bench_probes.py",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=None, help="also write the output here")
    parser.add_argument(
        "--only", default=None, help="comma-separated script names (e.g. bench_durable)"
    )
    args, passed_on = parser.parse_known_args(argv)
    scripts = SCRIPTS
    if args.only:
        wanted = {name.strip().removesuffix(".py") for name in args.only.split(",")}
        scripts = tuple(s for s in SCRIPTS if s.removesuffix(".py") in wanted)
    sink = args.output.open("w", encoding="utf-8") if args.output else None
    status = 0
    try:
        for script in scripts:
            command = [sys.executable, str(HERE / script), *passed_on]
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            text = result.stdout + (result.stderr if result.returncode else "")
            text += f"\n({script}: {time.perf_counter() - started:.0f} s)\n\n"
            sys.stdout.write(text)
            sys.stdout.flush()
            if sink is not None:
                sink.write(text)
                sink.flush()
            if result.returncode and not status:
                status = result.returncode
    finally:
        if sink is not None:
            sink.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
