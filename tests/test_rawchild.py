"""The raw-child kit of the crash explorers: frames survive any cut, children are reaped."""

from __future__ import annotations

import os
import pickle
import signal
import time

import pytest

from pytest_sessionstate.clock import real_monotonic
from pytest_sessionstate.testing import rawchild


def test_frames_come_back_whole_in_any_pieces() -> None:
    records = [("event", i, "x" * i) for i in range(50)]
    stream = b"".join(rawchild.frame(r) for r in records)
    for piece in (1, 7, 64, len(stream)):
        reader = rawchild.FrameReader()
        got = []
        for start in range(0, len(stream), piece):
            got += reader.feed(stream[start : start + piece])
        assert got == records
        assert not reader.pending


def test_a_frame_cut_short_by_a_kill_is_never_returned() -> None:
    stream = rawchild.frame(("a",)) + rawchild.frame(("b", "long" * 100))
    reader = rawchild.FrameReader()
    assert reader.feed(stream[:-3]) == [("a",)]
    assert reader.pending  # the cut frame waits, and is dropped with the reader


def test_frame_refuses_what_does_not_pickle() -> None:
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):
        rawchild.frame((lambda: None,))


def test_write_all_and_reap_a_child_that_exits() -> None:
    read_fd, write_fd = os.pipe()
    pid = rawchild.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        rawchild.write_all(write_fd, rawchild.frame(("hello", os.getpid())))
        os._exit(7)
    os.close(write_fd)
    try:
        data = b""
        while chunk := os.read(read_fd, 1 << 16):
            data += chunk
    finally:
        os.close(read_fd)
    status = rawchild.reap(pid, real_monotonic() + 30)
    assert status is not None
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 7
    assert rawchild.FrameReader().feed(data) == [("hello", pid)]
    assert rawchild.reap(pid, real_monotonic() + 1) is None  # reaped already: not ours


def test_reap_kills_a_child_that_lingers_past_the_deadline() -> None:
    pid = rawchild.fork()
    if pid == 0:  # pragma: no cover - the child
        time.sleep(60)
        os._exit(0)
    started = real_monotonic()
    status = rawchild.reap(pid, real_monotonic() + 0.2)
    assert status is not None
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGKILL
    assert real_monotonic() - started < 30  # killed, not waited out
