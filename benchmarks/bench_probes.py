"""Probe points: what they cost a write when no injector is listening.

API.md promises that a run with no injector active pays no measurable cost for
the probe points.  Each point is guarded by one truth test of
``probes.listeners``; this script times that test, counts the points one
``update_json`` passes, and sets their cost beside the update's own time, with
a do-nothing listener installed for scale (every point then builds an event).
"""

from __future__ import annotations

import sys
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # _common, and this checkout's package

from _common import Table, header, make_parser, median, ms, rounds_of, scratch_dir  # noqa: E402

from pytest_sessionstate import Settings, StateManager, probes  # noqa: E402

DOC = "doc.json"


def time_updates(manager: StateManager, ops: int) -> float:
    """Median seconds of one ``update_json`` over ``ops`` updates."""
    times = []
    clock = time.perf_counter
    for i in range(ops):
        start = clock()
        manager.update_json(DOC, {"counter": i, "steps.last": i})
        times.append(clock() - start)
    return median(times)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], rounds=5, quick_rounds=2)
    args = parser.parse_args(argv)
    ops = 100 if args.quick else 500
    root = scratch_dir(args.dir, "bench-probes-")
    header("Probe points with no listener", args, f"scratch dir {root}")

    check = (
        min(timeit.repeat("if probes.listeners: pass", globals={"probes": probes}, number=100_000))
        / 100_000
    )
    rows = []
    for durable in (False, True):
        manager = StateManager(f"s-{durable}", settings=Settings(root, durable=durable))
        manager.write_json(DOC, {"counter": 0, "steps": {}})
        seen: list[probes.ProbeEvent] = []
        with probes.listen(seen.append):
            manager.update_json(DOC, {"counter": 0})
        points = len(seen)
        quiet, listened = [], []
        for _ in range(rounds_of(args)):
            quiet.append(time_updates(manager, ops))
            with probes.listen(lambda event: None):
                listened.append(time_updates(manager, ops))
        per_op = median(quiet)
        rows.append(
            [
                f"update_json, durable={durable}",
                str(points),
                ms(per_op),
                f"{points * check * 1e9:.0f} ns",
                f"{points * check / per_op:.3%}",
                ms(median(listened)),
            ]
        )
    table = Table(
        [
            "operation",
            "probe points passed",
            "per op, no listener",
            "cost of the checks",
            "share of the op",
            "per op, a no-op listener",
        ]
    )
    for row in rows:
        table.add(*row)
    print(table.render(args.format))
    print(f"\none check of probes.listeners: {check * 1e9:.1f} ns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
