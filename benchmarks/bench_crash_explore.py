"""Crash exploration: the time of a whole ``explore`` of one durable update.

``CrashInjector.explore(update)`` where ``update`` is one ``update_json`` of a
small document with the default (durable) settings: 8 probe hits, so 9 runs,
each one a restore of the root, a run of the target crashed at its k-th hit
and the checks (parse, old-or-new, lock free, a following ``update_json``).
Timed in each mode, in interleaved rounds (the mode order flips every round);
the figure is the median over the rounds, with the time per run beside it.

Goal (issue #6): a whole ``explore`` of one durable update "well under a second".
"""

from __future__ import annotations

import sys
import time
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
    rounds_of,
    scratch_dir,
    verdict,
)

from pytest_sessionstate import Settings, StateManager, use_settings  # noqa: E402
from pytest_sessionstate.testing.crash import MODES, CrashInjector  # noqa: E402

SESSION = "bench"
DOC = "doc.json"
START_DOC = {"counter": 0, "owner": "bench", "status": "running", "steps": {"a": 1, "b": 2}}
#: "Well under a second": what the verdict line checks the median against.
GOAL_SECONDS = 0.5


def update() -> None:
    StateManager(SESSION).update_json(DOC, {"counter": 1, "steps.c": 3})


def explore_once(injector: CrashInjector, mode: str) -> tuple[float, int]:
    """Seconds one whole explore took, and its number of runs (the report must be ok)."""
    start = time.perf_counter()
    report = injector.explore(update, mode=mode)
    elapsed = time.perf_counter() - start
    report.assert_ok()
    return elapsed, report.runs


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], rounds=9, quick_rounds=3)
    args = parser.parse_args(argv)
    root = scratch_dir(args.dir, "bench-crash-") / "sessions"
    settings = Settings(root)  # durable: the default
    header(
        "Crash exploration: one whole explore of one durable update_json",
        args,
        f"scratch dir {root} ({filesystem_of(root.parent)})",
    )
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    runs: dict[str, int] = {}
    with use_settings(settings):
        StateManager(SESSION).write_json(DOC, START_DOC)
        injector = CrashInjector(settings)
        for index in range(rounds_of(args)):
            for mode in interleaved_order(MODES, index):
                elapsed, runs[mode] = explore_once(injector, mode)
                times[mode].append(elapsed)
            print(
                f"round {index + 1}: " + ", ".join(f"{m} {ms(times[m][-1])}" for m in MODES),
                flush=True,
            )
    table = Table(["mode", "runs", "median explore", "per run", "fastest", "slowest"])
    for mode in MODES:
        middle = median(times[mode])
        table.add(
            mode,
            runs[mode],
            ms(middle),
            ms(middle / runs[mode]),
            ms(min(times[mode])),
            ms(max(times[mode])),
        )
    print()
    print(table.render(args.format))
    print()
    worst = max(median(times[mode]) for mode in MODES)
    print(
        f"goal: a whole explore of one durable update well under a second "
        f"(median <= {GOAL_SECONDS:g} s in every mode): {verdict(worst <= GOAL_SECONDS)} "
        f"(slowest mode's median {ms(worst)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
