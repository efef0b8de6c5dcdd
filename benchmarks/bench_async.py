"""Async: one ``await update_json`` against the sync one, and contended increments.

* Uncontended: one ``await AsyncStateManager.update_json`` of a small document
  against ``StateManager.update_json`` of the same document, interleaved, with
  the cost of one thread hop (``await loop.run_in_executor(None, noop)``)
  measured in the same run.  Goal (issue #13): async <= 1.5 x sync + one hop.
* Contended, no lost update: 8 tasks x 100 ``transaction`` increments on one
  loop; 4 processes x 2 tasks x 50; beside them, the sync figures: 8 threads x
  100 and 8 processes x 100.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # _common, and this checkout's package

from _common import Table, header, make_parser, median, ms, rounds_of, verdict  # noqa: E402

from pytest_sessionstate import AsyncStateManager, Settings, StateManager  # noqa: E402

DOC = "doc.json"


def _sync_updates(manager: StateManager, ops: int) -> float:
    times = []
    for i in range(ops):
        start = time.perf_counter()
        manager.update_json(DOC, {"counter": i})
        times.append(time.perf_counter() - start)
    return median(times)


async def _async_updates(manager: AsyncStateManager, ops: int) -> float:
    times = []
    for i in range(ops):
        start = time.perf_counter()
        await manager.update_json(DOC, {"counter": i})
        times.append(time.perf_counter() - start)
    return median(times)


async def _hops(ops: int) -> float:
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(ops):
        start = time.perf_counter()
        await loop.run_in_executor(None, int)
        times.append(time.perf_counter() - start)
    return median(times)


async def _task_increments(settings: Settings, tasks: int, count: int) -> None:
    manager = AsyncStateManager("c", settings=settings)

    async def one() -> None:
        for _ in range(count):
            async with manager.transaction(DOC, default={"n": 0}) as document:
                document["n"] += 1

    await asyncio.gather(*(one() for _ in range(tasks)))


def _process_tasks(root: str, tasks: int, count: int) -> None:
    asyncio.run(_task_increments(Settings(root, durable=False), tasks, count))


def _sync_increments(root: str, count: int) -> None:
    manager = StateManager("c", settings=Settings(root, durable=False))
    for _ in range(count):
        with manager.transaction(DOC, default={"n": 0}) as document:
            document["n"] += 1


def _run_processes(target: object, args: tuple[object, ...], workers: int) -> float:
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=target, args=args) for _ in range(workers)]  # type: ignore[arg-type]
    start = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join(300)
    return time.perf_counter() - start


def _count(root: Path) -> int:
    return int(StateManager("c", settings=Settings(root)).read_json(DOC)["n"])


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__.splitlines()[0], rounds=5, quick_rounds=2)
    parser.add_argument("--ops", type=int, default=300, help="updates per round (default 300)")
    args = parser.parse_args(argv)
    header(__doc__.splitlines()[0], args)
    rounds = rounds_of(args)
    ops = 50 if args.quick else args.ops
    base = Path(tempfile.mkdtemp(prefix="bench-async-", dir=args.dir))
    settings = Settings(base / "root", durable=False)
    sync = StateManager("s", settings=settings)
    sync.write_json(DOC, {"counter": 0, "pad": "x" * 2000})
    manager = AsyncStateManager("s", settings=settings)
    sync_times, async_times, hop_times = [], [], []
    for _ in range(rounds):
        sync_times.append(_sync_updates(sync, ops))
        async_times.append(asyncio.run(_async_updates(manager, ops)))
        hop_times.append(asyncio.run(_hops(ops)))
    s, a, h = median(sync_times), median(async_times), median(hop_times)
    table = Table(["variant (small document, durable=False)", "per op (median)", "vs sync"])
    table.add("StateManager.update_json", ms(s), "1.00x")
    table.add("await AsyncStateManager.update_json", ms(a), f"{a / s:.2f}x")
    table.add("one thread hop (run_in_executor)", ms(h), f"{h / s:.2f}x")
    print(table.render(args.format))
    limit = 1.5 * s + h
    print(f"goal async <= 1.5 x sync + one hop ({ms(limit)}): {ms(a)} {verdict(a <= limit)}")

    contended = Table(["contended increments", "ops/s", "lost updates"])
    rows = []
    root = base / "tasks"
    start = time.perf_counter()
    asyncio.run(_task_increments(Settings(root, durable=False), 8, 100))
    rows.append(
        ("8 tasks x 100, one loop", 800 / (time.perf_counter() - start), 800 - _count(root))
    )
    root = base / "processes-tasks"
    elapsed = _run_processes(_process_tasks, (str(root), 2, 50), 4)
    rows.append(("4 processes x 2 tasks x 50", 400 / elapsed, 400 - _count(root)))
    root = base / "threads"
    threads = [threading.Thread(target=_sync_increments, args=(str(root), 100)) for _ in range(8)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    rows.append(("sync: 8 threads x 100", 800 / (time.perf_counter() - start), 800 - _count(root)))
    root = base / "processes"
    elapsed = _run_processes(_sync_increments, (str(root), 100), 8)
    rows.append(("sync: 8 processes x 100", 800 / elapsed, 800 - _count(root)))
    for name, rate, lost in rows:
        contended.add(name, f"{rate:,.0f}", lost)
    print(contended.render(args.format))
    return 0 if all(lost == 0 for _, _, lost in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
