"""The workers of :meth:`ContentionSimulator.run`: processes or threads, one start
barrier, every outcome collected, nothing left running.

How a run goes:

1. Each worker starts, installs a probe listener that records the seconds it
   waited at every ``lock-acquired`` point, reports "ready", and waits.
2. When every worker is ready, one event releases them all at once, so their
   calls really overlap.
3. Each worker calls the target ``iterations`` times and reports each return
   value or error as it happens: a worker killed later still has its earlier
   calls counted.
4. At ``timeout`` (counted from the start of the run) a process still running
   is SIGKILLed; a thread cannot be killed, so it is told to stop at its next
   probe point or call, and reported either way.

Process workers talk to the test process through one pipe each (no shared
queue: a worker killed while writing to a shared queue could wedge the others).
Every message is plain data; return values and exceptions travel as separate
pickles, so one that does not pickle, or does not unpickle, is reported as an
error of that call instead of breaking the collector.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing import connection
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any, Literal, get_args

from .. import probes
from ..clock import real_monotonic
from ..config import Settings, current_settings, use_settings
from ..probes import ProbeEvent
from . import usercall
from .processes import (
    Children,
    check_picklable,
    close_quietly,
    kill_and_reap,
    new_process,
    start_process,
)
from .results import (
    ContentionResult,
    WorkerDiedError,
    WorkerError,
    WorkerTimeoutError,
    qualified_name,
    safe_str,
    ship_exception,
)

__all__ = [
    "CONTENTION_MODES",
    "MODES",
    "ContentionMode",
    "CoroutineRunner",
    "run_processes",
    "run_tasks",
    "run_threads",
]

#: The type of :meth:`ContentionSimulator.run
#: <pytest_sessionstate.ContentionSimulator.run>`'s ``mode``: what the workers are.
ContentionMode = Literal["process", "thread", "task"]

#: The values of ``mode``: what a contention worker is.
CONTENTION_MODES: tuple[ContentionMode, ...] = get_args(ContentionMode)
#: The same, under its earlier name (one name per meaning: crash modes are
#: ``crash.CRASH_MODES``).
MODES = CONTENTION_MODES

#: Seconds a thread told to stop at the timeout gets before it is reported as still running.
THREAD_STOP_GRACE = 5.0

Target = Callable[..., Any]


class CoroutineRunner:
    """A coroutine function made a plain callable: each call runs one coroutine to its
    end in an event loop of its own.  Picklable when the function is (spawned workers)."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import asyncio

        return asyncio.run(self.function(*args, **kwargs))

    def __reduce__(self) -> tuple[Any, ...]:
        return (CoroutineRunner, (self.function,))

    def __repr__(self) -> str:
        return f"CoroutineRunner({self.function!r})"


@dataclass
class _Collected:
    """The outcomes gathered so far, worker by worker."""

    workers: int
    returns: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)
    errors: list[WorkerError] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    calls_done: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.returns = {worker: [] for worker in range(self.workers)}
        self.calls_done = [0] * self.workers

    def returned(self, worker: int, iteration: int, value: Any) -> None:
        self.returns[worker].append((iteration, value))
        self.calls_done[worker] = iteration + 1

    def failed(self, error: WorkerError) -> None:
        self.errors.append(error)
        if error.iteration is not None:
            self.calls_done[error.worker] = error.iteration + 1

    def result(
        self, *, iterations: int, mode: str, elapsed: float, timed_out: list[int]
    ) -> ContentionResult[Any]:
        returns = [
            value
            for worker in range(self.workers)
            for _, value in sorted(self.returns[worker], key=lambda item: item[0])
        ]
        errors = sorted(
            self.errors, key=lambda e: (e.worker, -1 if e.iteration is None else e.iteration)
        )
        return ContentionResult(
            returns=returns,
            errors=errors,
            elapsed=elapsed,
            lock_waits=list(self.waits),
            workers=self.workers,
            iterations=iterations,
            mode=mode,
            timed_out=sorted(timed_out),
        )


def _call_loop(
    target: Target,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    iterations: int,
    *,
    returned: Callable[[int, Any], None],
    raised: Callable[[int, BaseException], None],
    stopped: Callable[[], bool],
) -> None:
    """Call ``target`` ``iterations`` times, reporting each outcome."""
    for iteration in range(iterations):
        if stopped():
            return
        try:
            value = usercall.call(target, args, kwargs)
        except BaseException as exc:
            raised(iteration, exc)
            if not isinstance(exc, Exception):  # SystemExit, KeyboardInterrupt: stop here
                return
        else:
            returned(iteration, value)


# -- processes -----------------------------------------------------------------------------


def _send(conn: Connection, message: tuple[Any, ...]) -> None:
    conn.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))


def _process_main(  # noqa: PLR0917 - a Process target gets its arguments positionally
    conn: Connection,
    go: ProcessEvent,
    worker: int,
    iterations: int,
    call: Any,
    settings: Settings | None,
    release_timeout: float,
) -> None:
    """A worker process: the entry point, importable by name for ``spawn``."""
    waits: list[float] = []

    def record_wait(event: ProbeEvent) -> None:
        if event.point == "lock-acquired" and event.waited is not None:
            waits.append(event.waited)

    def take_waits() -> list[float]:
        taken = waits[:]
        del waits[:]
        return taken

    def returned(iteration: int, value: Any) -> None:
        try:
            blob = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:
            message = (
                f"the return value ({qualified_name(type(value))}) could not be sent back "
                f"to the test process: {safe_str(exc)}"
            )
            _send(
                conn,
                ("err", iteration, (qualified_name(type(exc)), message, "", None), take_waits()),
            )
        else:
            _send(conn, ("ret", iteration, blob, take_waits()))

    def raised(iteration: int, exc: BaseException) -> None:
        _send(conn, ("err", iteration, ship_exception(exc), take_waits()))

    try:
        if isinstance(call, bytes):
            target, args, kwargs = pickle.loads(call)
        else:
            target, args, kwargs = call
        with use_settings(settings if settings is not None else current_settings()):
            probes.add_listener(record_wait)
            _send(conn, ("ready",))
            if not go.wait(release_timeout):
                return  # never released: the test process gave up on this run
            _call_loop(
                target,
                args,
                kwargs,
                iterations,
                returned=returned,
                raised=raised,
                stopped=lambda: False,
            )
        _send(conn, ("done",))
    except BaseException as exc:
        _send(conn, ("fatal", ship_exception(exc)))
    finally:
        conn.close()


def _loads_or_error(blob: bytes) -> tuple[bool, Any]:
    try:
        return True, pickle.loads(blob)
    except BaseException as exc:
        return False, exc


class _ProcessWorker:
    """The test process's view of one worker process."""

    def __init__(self, index: int, process: BaseProcess, conn: Connection) -> None:
        self.index = index
        self.process = process
        self.conn = conn
        self.ready = False
        self.done = False
        self.finished = False
        self.eof = False  # the worker closed its end: nothing more will come

    def drain(self, collected: _Collected) -> None:
        """Handle every message waiting in the pipe (stop at end of file)."""
        try:
            while self.conn.poll(0):
                self._handle(pickle.loads(self.conn.recv_bytes()), collected)
        except (EOFError, OSError):
            self.eof = True

    def _handle(self, message: tuple[Any, ...], collected: _Collected) -> None:
        kind = message[0]
        if kind == "ready":
            self.ready = True
        elif kind == "done":
            self.done = True
        elif kind == "ret":
            _, iteration, blob, waits = message
            collected.waits.extend(waits)
            loaded, value = _loads_or_error(blob)
            if loaded:
                collected.returned(self.index, iteration, value)
            else:
                collected.failed(
                    WorkerError.of_runner(
                        self.index,
                        iteration,
                        type(value),
                        "the return value could not be unpickled in the test process: "
                        + safe_str(value),
                    )
                )
        elif kind == "err":
            _, iteration, shipped, waits = message
            collected.waits.extend(waits)
            collected.failed(WorkerError.from_shipped(self.index, iteration, shipped))
        elif kind == "fatal":
            collected.failed(WorkerError.from_shipped(self.index, None, message[1]))
            self.done = True  # nothing more will come; the failure is reported

    def finish(self, collected: _Collected, iterations: int) -> None:
        """The process has ended: collect its last words, reap it, report a death."""
        self.drain(collected)
        kill_and_reap(self.process)
        self.finished = True
        if not self.done:
            started = collected.calls_done[self.index]
            collected.failed(
                WorkerError.of_runner(
                    self.index,
                    started if self.ready and started < iterations else None,
                    WorkerDiedError,
                    f"worker process {self.process.pid} ended with exit code "
                    f"{self.process.exitcode} before finishing its calls",
                )
            )

    def kill(self, collected: _Collected, iterations: int, timeout: float) -> None:
        """The timeout passed: SIGKILL, reap, collect what was sent, report the kill."""
        kill_and_reap(self.process)
        self.drain(collected)
        self.finished = True
        if self.done:  # it finished just in time
            return
        started = collected.calls_done[self.index]
        if self.ready:
            what = f"was still running at the timeout ({timeout}s), in call {started}"
        else:
            what = f"had not started within the timeout ({timeout}s)"
        collected.failed(
            WorkerError.of_runner(
                self.index,
                started if self.ready and started < iterations else None,
                WorkerTimeoutError,
                f"worker process {self.process.pid} {what}; it was killed (SIGKILL)",
            )
        )


def run_processes(
    context: BaseContext,
    target: Target,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    workers: int,
    iterations: int,
    timeout: float,
    children: Children,
) -> ContentionResult[Any]:
    """Run the workers as processes of ``context``; see the module docstring.

    :raises TypeError: if the start method is ``spawn`` and the target or its
        arguments do not pickle.
    """
    start_method = context.get_start_method()
    settings: Settings | None = None
    call: Any = (target, tuple(args), dict(kwargs))
    if start_method != "fork":
        check_picklable(f"the target {target!r} with its args and kwargs", call, start_method)
        call = pickle.dumps(call, pickle.HIGHEST_PROTOCOL)
        settings = current_settings()  # a spawned child does not inherit use_settings()
    begin = real_monotonic()
    deadline = begin + timeout
    go = context.Event()
    running: list[_ProcessWorker] = []
    collected = _Collected(workers)
    released: float | None = None
    timed_out: list[int] = []
    try:
        for index in range(workers):
            # One pipe per worker, made just before its fork, and our end of the write
            # side closed right after: no other child inherits it, so end of file
            # arrives when (and only when) this worker is gone.
            reader, writer = context.Pipe(duplex=False)
            process = new_process(
                context,
                target=_process_main,
                args=(writer, go, index, iterations, call, settings, timeout),
                name=f"sessionstate-worker-{index}",
                daemon=True,
            )
            children.add(process)
            running.append(_ProcessWorker(index, process, reader))
            try:
                start_process(process)
            finally:
                writer.close()
        while True:
            pending = [worker for worker in running if not worker.finished]
            if not pending:
                break
            if released is None and all(worker.ready for worker in pending):
                released = real_monotonic()
                go.set()
            remaining = deadline - real_monotonic()
            if remaining <= 0:
                for worker in pending:
                    worker.kill(collected, iterations, timeout)
                    if not worker.done:
                        timed_out.append(worker.index)
                break
            waitables: list[Any] = [worker.conn for worker in pending if not worker.eof]
            waitables += [worker.process.sentinel for worker in pending]
            ready = connection.wait(waitables, remaining)
            for worker in pending:
                if worker.conn in ready:
                    worker.drain(collected)
                if worker.process.sentinel in ready:
                    worker.finish(collected, iterations)
        elapsed = real_monotonic() - (released if released is not None else begin)
    finally:
        for worker in running:
            kill_and_reap(worker.process)
            close_quietly(worker.conn)
            children.discard(worker.process)
    return collected.result(
        iterations=iterations, mode="process", elapsed=elapsed, timed_out=timed_out
    )


# -- threads -------------------------------------------------------------------------------


class _ThreadRun:
    """The thread workers of one run, and the probe listener that serves them."""

    def __init__(
        self,
        target: Target,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        workers: int,
        iterations: int,
        timeout: float,
    ) -> None:
        self.collected = _Collected(workers)
        self.iterations = iterations
        self.timeout = timeout
        self.go = threading.Event()
        self.stop = threading.Event()
        self._mutex = threading.Lock()
        self._ready = 0
        self._all_ready = threading.Event()
        self._workers_by_thread: dict[int, int] = {}
        self.threads = [
            threading.Thread(
                target=self._main,
                args=(index, target, args, kwargs),
                name=f"sessionstate-worker-{index}",
                daemon=True,
            )
            for index in range(workers)
        ]

    def listener(self, event: ProbeEvent) -> None:
        """Record lock waits of our workers; stop a worker told to stop."""
        worker = self._workers_by_thread.get(threading.get_ident())
        if worker is None:
            return
        if self.stop.is_set():
            raise WorkerTimeoutError(
                f"worker {worker} stopped at probe point {event.point!r}: "
                f"the run's timeout ({self.timeout}s) passed"
            )
        if event.point == "lock-acquired" and event.waited is not None:
            with self._mutex:
                self.collected.waits.append(event.waited)

    def _main(
        self, index: int, target: Target, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        self._workers_by_thread[threading.get_ident()] = index
        try:
            with self._mutex:
                self._ready += 1
                if self._ready == len(self.threads):
                    self._all_ready.set()
            if not self.go.wait(self.timeout) or self.stop.is_set():
                return

            def returned(iteration: int, value: Any) -> None:
                with self._mutex:
                    self.collected.returned(index, iteration, value)

            def raised(iteration: int, exc: BaseException) -> None:
                with self._mutex:
                    self.collected.failed(WorkerError.from_exception(index, iteration, exc))

            _call_loop(
                target,
                args,
                kwargs,
                self.iterations,
                returned=returned,
                raised=raised,
                stopped=self.stop.is_set,
            )
        finally:
            # Thread ids are recycled: a later thread must not pass for this worker.
            self._workers_by_thread.pop(threading.get_ident(), None)

    def start(self, deadline: float) -> float:
        """Start the threads, release them together; return the release time."""
        for thread in self.threads:
            thread.start()
        self._all_ready.wait(max(deadline - real_monotonic(), 0))
        released = real_monotonic()
        self.go.set()
        return released

    def join(self, deadline: float) -> None:
        """Wait for the threads until ``deadline``."""
        for thread in self.threads:
            thread.join(max(deadline - real_monotonic(), 0))

    def alive(self) -> list[int]:
        """The workers whose thread still runs."""
        return [index for index, thread in enumerate(self.threads) if thread.is_alive()]

    def halt(self, grace: float) -> list[int]:
        """Tell every worker to stop, wait up to ``grace``; return those still running."""
        self.stop.set()
        self.go.set()  # a worker still waiting to be released sees ``stop`` and returns
        self.join(real_monotonic() + grace)
        return self.alive()

    def report_timeouts(self, stuck: list[int], cut: list[int]) -> None:
        """Report the workers cut short by the timeout (``stuck``: still running)."""
        with self._mutex:
            for index in cut:
                reported = any(
                    error.worker == index and error.exc_type == qualified_name(WorkerTimeoutError)
                    for error in self.collected.errors
                )
                if reported and index not in stuck:
                    continue
                started = self.collected.calls_done[index]
                if index in stuck:
                    what = (
                        "is still running (a thread cannot be killed; it stops at its next "
                        "probe point; use mode='process' to have it killed)"
                    )
                else:
                    what = "was stopped"
                self.collected.failed(
                    WorkerError.of_runner(
                        index,
                        started if started < self.iterations else None,
                        WorkerTimeoutError,
                        f"worker thread {index} was still running at the timeout "
                        f"({self.timeout}s) and {what}",
                    )
                )


def run_threads(
    target: Target,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    workers: int,
    iterations: int,
    timeout: float,
    children: Children,
) -> ContentionResult[Any]:
    """Run the workers as threads of this process; see the module docstring."""
    begin = real_monotonic()
    deadline = begin + timeout
    run = _ThreadRun(target, args, kwargs, workers=workers, iterations=iterations, timeout=timeout)
    probes.add_listener(run.listener)
    stuck: list[int] = []
    cut: list[int] = []
    released = begin
    try:
        released = run.start(deadline)
        run.join(deadline)
        cut = run.alive()
        elapsed = real_monotonic() - released
        if cut:
            stuck = run.halt(min(THREAD_STOP_GRACE, max(timeout, 1.0)))
            run.report_timeouts(stuck, cut)
    finally:
        if not stuck:
            stuck = run.halt(0) if run.alive() else []
        if stuck:
            # Keep the listener: it stops them at their next probe point.  The
            # simulator's close() waits for them once more and removes it.
            def stop_later() -> None:
                run.halt(THREAD_STOP_GRACE)
                probes.remove_listener(run.listener)

            children.add_stopper(stop_later)
        else:
            probes.remove_listener(run.listener)
    with run._mutex:
        return run.collected.result(
            iterations=iterations, mode="thread", elapsed=elapsed, timed_out=cut
        )


def run_tasks(
    target: Target,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    workers: int,
    iterations: int,
    timeout: float,
) -> ContentionResult[Any]:
    """Run the workers as tasks of one new event loop (in a thread of its own, so that
    it works whether or not the caller runs a loop), released together.

    The timeout is watched on the real clock (freezegun stops the loop's), and
    the tasks still running then are cancelled and reported.
    """
    import asyncio
    import inspect

    collected = _Collected(workers)
    mutex = threading.Lock()

    def listener(event: Any) -> None:
        if event.point == "lock-acquired" and event.waited is not None:
            with mutex:
                collected.waits.append(event.waited)

    outcome: dict[str, Any] = {}
    cut: list[int] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        go = asyncio.Event()

        async def worker(index: int) -> None:
            await go.wait()
            for iteration in range(iterations):
                try:
                    value = target(*args, **kwargs)
                    if inspect.isawaitable(value):
                        value = await value
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    with mutex:
                        collected.failed(WorkerError.from_exception(index, iteration, exc))
                else:
                    with mutex:
                        collected.returned(index, iteration, value)

        tasks = [loop.create_task(worker(index)) for index in range(workers)]
        await asyncio.sleep(0)  # every task started, waiting to be released
        timer = threading.Timer(
            timeout, lambda: loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
        )
        timer.daemon = True
        released = real_monotonic()
        go.set()
        timer.start()
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            timer.cancel()
        outcome["elapsed"] = real_monotonic() - released
        for index, task in enumerate(tasks):
            if task.cancelled():
                cut.append(index)

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported below
            outcome["error"] = exc

    probes.add_listener(listener)
    try:
        thread = threading.Thread(target=thread_main, name="sessionstate-tasks")
        thread.start()
        thread.join(timeout + THREAD_STOP_GRACE)
    finally:
        probes.remove_listener(listener)
    if "error" in outcome:  # pragma: no cover
        raise outcome["error"]
    with mutex:
        for index in cut:
            started = collected.calls_done[index]
            collected.failed(
                WorkerError.of_runner(
                    index,
                    started if started < iterations else None,
                    WorkerTimeoutError,
                    f"worker task {index} was still running at the timeout ({timeout}s) "
                    "and was cancelled",
                )
            )
        return collected.result(
            iterations=iterations,
            mode="task",
            elapsed=outcome.get("elapsed", timeout),
            timed_out=cut,
        )
