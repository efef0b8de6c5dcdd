"""Contention and crashes with real processes, threads and SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import threading

import pytest

from pytest_sessionstate import Settings, StateManager, probes
from pytest_sessionstate.fsops import is_temp_name
from pytest_sessionstate.probes import WRITE_POINTS

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"
)

ctx = multiprocessing.get_context("fork")
WORKERS = 8
INCREMENTS = 40
WAIT = 60.0


def _increment(root, durable, worker, barrier, increments):
    manager = StateManager("counter", settings=Settings(root, lock_timeout=WAIT, durable=durable))
    barrier.wait(WAIT)
    for i in range(increments):
        with manager.transaction("count.json", default={"n": 0, "log": []}) as doc:
            doc["n"] += 1
            doc["log"].append(f"{worker}-{i}")


def check_nothing_lost(manager, workers, increments):
    doc = manager.read_json("count.json")
    assert doc["n"] == workers * increments
    expected = {f"{w}-{i}" for w in range(workers) for i in range(increments)}
    assert len(doc["log"]) == len(expected)
    assert set(doc["log"]) == expected
    # Each worker's own increments appear in its order.
    for w in range(workers):
        mine = [entry for entry in doc["log"] if entry.startswith(f"{w}-")]
        assert mine == [f"{w}-{i}" for i in range(increments)]
    assert not [n for n in os.listdir(manager.session_dir) if is_temp_name(n)]


def test_processes_lose_no_transaction_increment(tmp_path):
    cfg = Settings(tmp_path / "root", lock_timeout=WAIT, durable=False)
    barrier = ctx.Barrier(WORKERS)
    procs = [
        ctx.Process(target=_increment, args=(str(cfg.root), False, w, barrier, INCREMENTS))
        for w in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(WAIT)
        if proc.is_alive():
            proc.kill()
            proc.join(WAIT)
    assert [proc.exitcode for proc in procs] == [0] * WORKERS
    check_nothing_lost(StateManager("counter", settings=cfg), WORKERS, INCREMENTS)


def test_threads_lose_no_transaction_increment(tmp_path):
    cfg = Settings(tmp_path / "root", lock_timeout=WAIT, durable=False)
    barrier = threading.Barrier(WORKERS)
    errors = []

    def run(worker):
        try:
            _increment(str(cfg.root), False, worker, barrier, INCREMENTS)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    check_nothing_lost(StateManager("counter", settings=cfg), WORKERS, INCREMENTS)


def _threads_in_a_process(root, first_worker, barrier):
    threads = [
        threading.Thread(target=_increment, args=(root, False, w, barrier, 20))
        for w in range(first_worker, first_worker + 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)


def test_threads_of_several_processes_together(tmp_path):
    cfg = Settings(tmp_path / "root", lock_timeout=WAIT, durable=False)
    barrier = ctx.Barrier(8)
    procs = [
        ctx.Process(target=_threads_in_a_process, args=(str(cfg.root), 2 * p, barrier))
        for p in range(4)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(WAIT)
        if proc.is_alive():
            proc.kill()
    assert [proc.exitcode for proc in procs] == [0] * 4
    check_nothing_lost(StateManager("counter", settings=cfg), 8, 20)


# -- SIGKILL mid-write ---------------------------------------------------------------------------

PAYLOAD = ["x" * 64] * 1500  # ~100 KB per write: a wide window for a kill to land in


def _write_until_killed(root, started):
    manager = StateManager("victim", settings=Settings(root, lock_timeout=WAIT))
    first = True
    while True:
        with manager.transaction("state.json", default={"n": 0}) as doc:
            doc["n"] += 1
            doc["payload"] = PAYLOAD
            doc["parity"] = doc["n"] % 2
        manager.update_json("state.json", {"meta.last": doc["n"]})
        if first:
            started.send(True)
            first = False


def temp_files(manager):
    return [n for n in os.listdir(manager.session_dir) if is_temp_name(n)]


def check_after_crash(manager, previous_n):
    doc = manager.read_json("state.json")  # parses: never torn or empty
    assert doc["parity"] == doc["n"] % 2
    assert doc["n"] >= previous_n  # nothing that was written is undone
    with manager.lock(timeout=0):  # the lock is free at once
        pass
    assert manager.list_files() == ["state.json"]
    return doc["n"]


def test_a_writer_killed_at_random_moments_never_corrupts_or_blocks(tmp_path):
    cfg = Settings(tmp_path / "root", lock_timeout=WAIT)
    manager = StateManager("victim", settings=cfg)
    rng = random.Random(20240101)
    n = 0
    orphans_seen = 0
    for _ in range(40):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_write_until_killed, args=(str(cfg.root), send))
        proc.start()
        assert receive.poll(WAIT), "the writer never completed a first write"
        threading.Event().wait(rng.uniform(0, 0.02))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(WAIT)
        assert proc.exitcode == -signal.SIGKILL
        n = check_after_crash(manager, n)
        orphans = temp_files(manager)
        orphans_seen += bool(orphans)
        assert len(orphans) <= 1  # the next writer reclaimed the previous one's orphan
    # Some kills landed mid-write (about half here): the crashes were real ones.
    assert orphans_seen >= 1
    manager.update_json("state.json", {"after": True})
    assert temp_files(manager) == []
    assert n > 40


def _killed_at(root, point, nth):
    hits = 0

    def die(event):
        nonlocal hits
        if event.point == point and event.filename in (None, "state.json"):
            hits += 1
            if hits == nth:
                os.kill(os.getpid(), signal.SIGKILL)

    manager = StateManager("victim", settings=Settings(root, lock_timeout=WAIT))
    with probes.listen(die):
        manager.update_json("state.json", {"n": manager.read_json("state.json")["n"] + 1})
    os._exit(3)  # not killed: the point was never reached


@pytest.mark.parametrize("point", [*WRITE_POINTS])
def test_a_writer_killed_at_each_write_point_leaves_old_or_new(tmp_path, point):
    cfg = Settings(tmp_path / "root", lock_timeout=WAIT)
    manager = StateManager("victim", settings=cfg)
    manager.write_json("state.json", {"n": 0})
    seen = set()
    for _ in range(5):
        before = manager.read_json("state.json")["n"]
        proc = ctx.Process(target=_killed_at, args=(str(cfg.root), point, 1))
        proc.start()
        proc.join(WAIT)
        assert proc.exitcode == -signal.SIGKILL
        after = manager.read_json("state.json")["n"]
        assert after in (before, before + 1)
        seen.add(after - before)
        with manager.lock(timeout=0):
            pass
        assert len(temp_files(manager)) <= 1  # orphans never pile up
    replaced = WRITE_POINTS.index(point) >= WRITE_POINTS.index("replaced")
    assert seen == ({1} if replaced else {0})
    manager.update_json("state.json", {"done": True})
    assert temp_files(manager) == []
