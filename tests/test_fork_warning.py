"""The toolkit silences exactly one warning around its forks, and no other.

Python 3.12+ warns when a process with threads forks; the toolkit's children are
bounded and run only its own loop and the user's target, so that one warning is
silenced. Any other DeprecationWarning raised meanwhile stays the user's to see.
"""

from __future__ import annotations

import os
import warnings

import pytest

from pytest_sessionstate.testing import rawchild
from pytest_sessionstate.testing.processes import fork_warning_silenced


def test_only_the_fork_with_threads_warning_is_silenced() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with fork_warning_silenced():
            warn_both()

    assert [str(w.message) for w in seen] == ["another deprecation"]


def warn_both() -> None:
    warnings.warn(
        f"This process (pid={os.getpid()}) is multi-threaded, use of fork() may lead "
        "to deadlocks in the child.",
        DeprecationWarning,
        stacklevel=1,
    )
    warnings.warn("another deprecation", DeprecationWarning, stacklevel=1)


def test_the_crash_explorers_fork_uses_the_exact_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both explorers (probe points and system calls) fork through rawchild.fork;
    before, the system-call explorer hid every DeprecationWarning."""
    from pytest_sessionstate.testing import crashlog, filecrash

    # os.fork stands in for a fork that warns twice: the point here is the filter.
    def warning_fork() -> int:
        warn_both()
        return 12345

    monkeypatch.setattr(rawchild.os, "fork", warning_fork)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert rawchild.fork() == 12345

    assert [str(w.message) for w in seen] == ["another deprecation"]
    assert crashlog.rawchild.fork is filecrash.rawchild.fork is rawchild.fork
