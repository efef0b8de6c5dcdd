"""Call the user's code so that freezegun treats it as the test's own code.

freezegun decides per call whether ``time.time()``, ``time.monotonic()`` and
friends return the frozen or the real time by looking a few frames up the stack
(``freezegun.api.call_stack_inspection_limit``, 5 by default): if any of those
frames belongs to a module on its ignore list, the call gets real time.  Its
default list holds ``threading`` and ``multiprocessing``, and the plugin adds
``pytest_sessionstate`` (so the toolkit's own waits stay real).  A target that
the toolkit calls in a worker thread, a forked worker process or a crash run
would therefore read real time under ``freeze_time`` although the test froze
it: the frames just above the target are the toolkit's and ``threading``'s.

:func:`call` puts that many neutral frames (module ``sessionstate_target``)
between the toolkit and the target when freezegun is imported, so the target
and everything it calls see the same clock as the test's body.  Without
freezegun it is a plain call.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["HOP_MODULE", "call"]

#: The module name of the neutral frames (on no ignore list).
HOP_MODULE = "sessionstate_target"

_SOURCE = """
def hop(count, target, args, kwargs):
    __tracebackhide__ = True
    if count > 1:
        return hop(count - 1, target, args, kwargs)
    return target(*args, **kwargs)
"""

_namespace: dict[str, Any] = {"__name__": HOP_MODULE}
exec(compile(_SOURCE, f"<{HOP_MODULE}>", "exec"), _namespace)
_hop: Callable[[int, Callable[..., Any], Sequence[Any], Mapping[str, Any]], Any]
_hop = _namespace["hop"]


def _depth() -> int:
    api = sys.modules.get("freezegun.api")
    if api is None:
        return 0
    limit = getattr(api, "call_stack_inspection_limit", 0)
    return limit if isinstance(limit, int) and limit > 0 else 0


def call(target: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``target(*args, **kwargs)``, seen by freezegun as called from neutral code."""
    depth = _depth()
    if depth == 0:
        return target(*args, **kwargs)
    return _hop(depth, target, args, kwargs)


def is_hop(frame_globals: Mapping[str, Any]) -> bool:
    """Whether a frame with these globals is one of :func:`call`'s neutral frames."""
    return frame_globals.get("__name__") == HOP_MODULE
