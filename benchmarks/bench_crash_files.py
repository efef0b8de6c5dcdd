"""crash.explore_files: what intercepting file system calls costs, and whole explorations.

* Interception overhead: a child process that makes N small ``os.write`` calls
  to a file in the explored directory, run once untouched and once under the
  seccomp filter (every write a notification the parent answers), in
  interleaved rounds; the difference per call is the cost of one intercepted
  operation.  Goal (issue #17): under 100 us.
* Whole kill-mode explorations: one sqlite3 transaction with the defaults
  (goal under 10 s) and one durable ``StateManager.update_json`` (goal under 1 s).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # _common, and this checkout's package

from _common import Table, header, make_parser, median, ms, rounds_of, verdict  # noqa: E402

from pytest_sessionstate import Settings, StateManager  # noqa: E402
from pytest_sessionstate.testing import filecrash  # noqa: E402
from pytest_sessionstate.testing.crash import CrashInjector  # noqa: E402
from pytest_sessionstate.testing.snapshot import take_snapshot  # noqa: E402


def _writes(directory: str, count: int) -> None:
    fd = os.open(os.path.join(directory, "blob"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(count):
            os.write(fd, b"x")
    finally:
        os.close(fd)


def _plain_child(directory: str, count: int) -> float:
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            _writes(directory, count)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return time.perf_counter() - start


def _intercepted_child(directory: str, count: int) -> float:
    initial = take_snapshot(Path(directory))
    start = time.perf_counter()
    # crash_at beyond the last operation: every call is seen and let through.
    filecrash.run_intercepted(
        _writes, (directory, count), {}, directory, count + 10, "kill", 120.0, initial
    )
    return time.perf_counter() - start


def _sqlite_transaction(directory: Path) -> None:
    with sqlite3.connect(directory / "shop.db") as db:
        db.execute("INSERT INTO orders (sku) VALUES ('cups')")
    db.close()


def _state_update(root: Path) -> None:
    StateManager("s1", settings=Settings(root)).update_json("doc.json", {"n": 1})


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], rounds=5, quick_rounds=2)
    parser.add_argument("--calls", type=int, default=5000, help="writes per child (default 5000)")
    args = parser.parse_args(argv)
    header(__doc__.splitlines()[0], args)
    reason = filecrash.unsupported_reason()
    if reason is not None:
        print(f"explore_files cannot run here: {reason}")
        return 1
    rounds = rounds_of(args)
    calls = 500 if args.quick else args.calls
    base = Path(tempfile.mkdtemp(prefix="bench-crash-files-", dir=args.dir))
    plain, intercepted = [], []
    for _ in range(rounds):
        plain.append(_plain_child(str(base), calls))
        intercepted.append(_intercepted_child(str(base), calls))
    per_call = (median(intercepted) - median(plain)) / calls
    table = Table(["variant", f"{calls} writes in a child (median)", "per write"])
    table.add("uninstrumented", ms(median(plain)), ms(median(plain) / calls))
    table.add("intercepted (seccomp user notification)", ms(median(intercepted)), "")
    table.add("overhead per intercepted operation", "", f"{per_call * 1e6:.1f} us")
    print(table.render(args.format))
    print(
        f"goal overhead < 100 us per operation: {per_call * 1e6:.1f} us {verdict(per_call < 1e-4)}"
    )

    crash = CrashInjector(Settings(base / "injector-root"))
    shop = base / "shop"
    shop.mkdir()
    with sqlite3.connect(shop / "shop.db") as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, sku TEXT)")
    db.close()
    state_root = base / "state"
    StateManager("s1", settings=Settings(state_root)).write_json("doc.json", {"n": 0})
    whole = Table(["exploration (kill mode)", "runs", "median wall time", "goal"])
    results = []
    for name, target, directory, goal in (
        ("one sqlite3 transaction (defaults)", _sqlite_transaction, shop, 10.0),
        ("one durable StateManager.update_json", _state_update, state_root, 1.0),
    ):
        times = []
        runs = 0
        for _ in range(max(1, rounds // 2)):
            start = time.perf_counter()
            report = crash.explore_files(target, directory, args=(directory,))
            times.append(time.perf_counter() - start)
            runs = report.runs
        results.append((name, median(times), goal))
        whole.add(name, runs, f"{median(times):.2f} s", f"< {goal:.0f} s")
    print(whole.render(args.format))
    for name, seconds, goal in results:
        print(f"goal {name} < {goal:.0f} s: {seconds:.2f} s {verdict(seconds < goal)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
