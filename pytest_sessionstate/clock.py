"""A monotonic clock that time-freezing libraries cannot stop.

freezegun replaces ``time.monotonic`` and ``time.perf_counter`` (and any module
attribute bound to them) while ``freeze_time`` is active; a lock timeout
measured with them never expires.  ``time.clock_gettime(CLOCK_MONOTONIC)`` is
left alone by freezegun and time-machine, so deadlines are measured with it.
Where it does not exist (Windows), ``time.monotonic`` is captured in a closure
at import, out of reach of freezegun's module scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["real_monotonic"]


def _make_clock() -> Callable[[], float]:
    gettime = getattr(time, "clock_gettime", None)
    clock_id = getattr(time, "CLOCK_MONOTONIC", None)
    if gettime is not None and clock_id is not None:

        def clock() -> float:
            return gettime(clock_id)  # type: ignore[no-any-return]

        return clock
    monotonic = time.monotonic

    def fallback() -> float:
        return monotonic()

    return fallback


#: Seconds on a real monotonic clock (unaffected by freezegun and time-machine).
real_monotonic: Callable[[], float] = _make_clock()
