"""The pytest plugin (entry point ``sessionstate``): fixtures, marker, ini options.

Imported by every pytest run in an environment where the package is installed,
so it stays cheap: it imports neither Hypothesis nor freezegun, and the toolkit
modules (``testing/``) are imported inside the fixtures and hooks that use them.

What it adds to a run:

- fixtures ``session_root``, ``session_settings``, ``make_session``,
  ``session_root_factory``, ``shared_session_root``, ``contention``, ``crash``;
- the marker ``@pytest.mark.sessionstate(lock_timeout=..., durable=...)``;
- the ini options ``sessionstate_lock_timeout`` and ``sessionstate_durable``;
- a ``sessionstate`` section in the report of a failing test that used the
  fixtures (see :mod:`pytest_sessionstate.testing.report`);
- with pytest-xdist, one ``shared_session_root`` for all workers of a run;
- with freezegun imported by the tests, the package on freezegun's ignore list.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .config import Settings, use_settings

if TYPE_CHECKING:
    from .testing.contention import ContentionSimulator
    from .testing.crash import CrashInjector
    from .testing.roots import MakeSession, RootLog, SessionRootFactory

__all__ = [
    "DURABLE_INI",
    "ISOLATION_INI",
    "ISOLATION_MODES",
    "LOCK_TIMEOUT_INI",
    "MARKER",
    "SHARED_ROOT_WORKERINPUT",
]

#: The marker's name: ``@pytest.mark.sessionstate(lock_timeout=..., durable=...)``.
MARKER = "sessionstate"
#: Ini option: the run-wide default lock timeout (seconds) of the fixtures' settings.
LOCK_TIMEOUT_INI = "sessionstate_lock_timeout"
#: Ini option: the run-wide default durability of the fixtures' settings.
DURABLE_INI = "sessionstate_durable"
#: Ini option: what a test that asked for no root gets (:data:`ISOLATION_MODES`).
ISOLATION_INI = "sessionstate_isolation"
#: The values of :data:`ISOLATION_INI`: ``none`` (the default: a test that asks for no
#: root uses the real default root), ``fresh`` (every test gets a fresh root, as if it
#: had asked for ``session_root``), ``strict`` (reaching the real default root during a
#: test fails it, naming the fixture to use).
ISOLATION_MODES: tuple[str, ...] = ("none", "fresh", "strict")
#: The ``workerinput`` key through which the xdist controller hands its shared root
#: to the workers.
SHARED_ROOT_WORKERINPUT = "sessionstate_shared_root"

_MARKER_ARGUMENTS = ("lock_timeout", "durable")
_DEFAULT_LOCK_TIMEOUT = 30.0

_defaults_key = pytest.StashKey[tuple[float, bool]]()
_current_item_key: pytest.StashKey[pytest.Item | None] = pytest.StashKey()
_shared_root_key = pytest.StashKey[Path]()
_root_log_key: pytest.StashKey[RootLog] = pytest.StashKey()
_isolation_key = pytest.StashKey[str]()
_implicit_root_key = pytest.StashKey[Path]()
_real_root_hits_key = pytest.StashKey[list[str]]()
_injectors_key: pytest.StashKey[list[CrashInjector]] = pytest.StashKey()
_states_key = pytest.StashKey[dict[str, tuple[int, str]]]()


# -- options and marker ------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ini options that set the fixtures' run-wide defaults."""
    parser.addini(
        LOCK_TIMEOUT_INI,
        "pytest-sessionstate: default lock timeout in seconds of the fixtures' settings "
        f"(0: one attempt, negative: wait forever; default {_DEFAULT_LOCK_TIMEOUT:g})",
        type="string",
        default=str(_DEFAULT_LOCK_TIMEOUT),
    )
    parser.addini(
        DURABLE_INI,
        "pytest-sessionstate: whether the fixtures' settings fsync every write (default true)",
        type="bool",
        default=True,
    )
    parser.addini(
        ISOLATION_INI,
        "pytest-sessionstate: what a test that asks for no session root gets: none (the "
        "real default root), fresh (a fresh root, as if it asked for session_root) or "
        "strict (reaching the real root fails the test); default none",
        type="string",
        default="none",
    )


def _parse_lock_timeout(raw: object) -> float:
    try:
        value = float(str(raw).strip())
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise pytest.UsageError(
            f"{LOCK_TIMEOUT_INI} must be a number of seconds "
            f"(0: one attempt, negative: wait forever), not {raw!r}"
        )
    return value


def _read_isolation(config: pytest.Config) -> str:
    raw = config.getini(ISOLATION_INI)
    value = str(raw).strip().lower()
    if value not in ISOLATION_MODES:
        raise pytest.UsageError(
            f"{ISOLATION_INI} must be one of {', '.join(ISOLATION_MODES)}, not {raw!r}"
        )
    return value


def _read_defaults(config: pytest.Config) -> tuple[float, bool]:
    lock_timeout = _parse_lock_timeout(config.getini(LOCK_TIMEOUT_INI))
    try:
        durable = config.getini(DURABLE_INI)
    except (ValueError, pytest.UsageError) as exc:  # pytest words it without the name
        raise pytest.UsageError(f"{DURABLE_INI} must be true or false: {exc}") from None
    return lock_timeout, bool(durable)


def _check_marker_value(name: str, value: object) -> str | None:
    if value is None:
        return None
    if name == "lock_timeout":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return (
                "lock_timeout must be a number of seconds "
                f"(0: one attempt, negative: wait forever), not {value!r}"
            )
    elif not isinstance(value, bool):
        return f"durable must be True or False, not {value!r}"
    return None


def _marker_overrides(item: pytest.Item) -> dict[str, Any]:
    """The settings the ``sessionstate`` markers of ``item`` set; the closest wins.

    A marker on the test overrides one on its class or module, argument by argument.
    """
    overrides: dict[str, Any] = {}
    for mark in item.iter_markers(MARKER):
        problem = None
        if mark.args:
            problem = f"takes keyword arguments only ({', '.join(_MARKER_ARGUMENTS)})"
        for name, value in mark.kwargs.items():
            if problem is not None:
                break
            if name not in _MARKER_ARGUMENTS:
                problem = f"unknown argument {name!r}; it takes {', '.join(_MARKER_ARGUMENTS)}"
            else:
                problem = _check_marker_value(name, value)
            if problem is None and value is not None:
                overrides.setdefault(name, value)
        if problem is not None:
            pytest.fail(f"@pytest.mark.{MARKER}: {problem}", pytrace=False)
    return overrides


def _settings_for(config: pytest.Config, item: pytest.Item | None, root: Path) -> Settings:
    """The fixtures' settings for ``root``: ini defaults, then ``item``'s markers."""
    lock_timeout, durable = config.stash.get(_defaults_key, (_DEFAULT_LOCK_TIMEOUT, True))
    if item is not None:
        overrides = _marker_overrides(item)
        lock_timeout = overrides.get("lock_timeout", lock_timeout)
        durable = overrides.get("durable", durable)
    return Settings(root, lock_timeout=lock_timeout, durable=durable)


# -- freezegun -----------------------------------------------------------------------

_freezegun_configured = False


def _exempt_from_freezegun() -> None:
    """Put the package on freezegun's ignore list, if the tests imported freezegun.

    The core measures lock deadlines with a clock freezegun cannot patch
    (:mod:`pytest_sessionstate.clock`); this covers any other clock read by the
    toolkit: calls from ``pytest_sessionstate`` modules see real time, and their
    module attributes are not swapped for fakes.  freezegun copies its ignore
    list when ``freeze_time(...)`` is called, so this runs at configure time,
    before each collector and before each test.  It never imports freezegun.
    """
    global _freezegun_configured
    if _freezegun_configured:
        return
    freezegun = sys.modules.get("freezegun")
    configure = getattr(freezegun, "configure", None)
    if configure is None:
        return
    configure(extend_ignore_list=["pytest_sessionstate"])
    _freezegun_configured = True


# -- hooks ---------------------------------------------------------------------------


class _XdistHooks:
    """Hooks that exist only when pytest-xdist is installed (registered on demand)."""

    def pytest_configure_node(self, node: Any) -> None:
        """On the controller: hand each local worker the run's shared root."""
        spec = getattr(getattr(node, "gateway", None), "spec", None)
        if spec is not None and not getattr(spec, "popen", True):
            return  # a remote worker cannot reach the controller's disk
        config: pytest.Config = node.config
        root = config.stash.get(_shared_root_key, None)
        if root is None:
            uid = str(node.workerinput.get("testrunuid") or uuid.uuid4().hex)
            root = _make_shared_root(getattr(config, "_tmp_path_factory", None), uid)
            config.stash[_shared_root_key] = root
        node.workerinput[SHARED_ROOT_WORKERINPUT] = str(root)


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, read the ini options, hook into xdist if present."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(lock_timeout=None, durable=None): settings of the pytest-sessionstate "
        "fixtures for this test (lock timeout in seconds, fsync on write)",
    )
    config.stash[_defaults_key] = _read_defaults(config)
    config.stash[_isolation_key] = _read_isolation(config)
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(), "sessionstate-xdist")
    _exempt_from_freezegun()


def pytest_collectstart() -> None:
    """Catch freezegun imported by a conftest or an earlier test module."""
    _exempt_from_freezegun()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Reject a malformed ``sessionstate`` marker before any fixture runs."""
    _exempt_from_freezegun()
    if item.get_closest_marker(MARKER) is not None:
        _marker_overrides(item)


class _RealRootGuard:
    """``sessionstate_isolation = strict``: fail a test that reaches the real root.

    Installed as :data:`pytest_sessionstate.config.default_settings_guard` while
    a test runs, so it is consulted only when no ``use_settings`` block (no
    fixture) is in force.  It raises ``pytest.fail``'s exception (a
    ``BaseException``, so an ``except Exception`` in the code under test does not
    swallow it) and records the hit, so a test that swallowed it all the same
    fails in its report.
    """

    def __init__(self, item: pytest.Item) -> None:
        self.item = item

    def __call__(self, default: Settings) -> Settings:
        __tracebackhide__ = True
        message = (
            f"{ISOLATION_INI} = strict: this test reached the real session root "
            f"{default.root} (StateManager, get_session_or_raise or list_sessions "
            "without settings=, and no fixture in force). Ask for the session_root "
            "fixture (or make_session / session_settings): the default settings then "
            "point at a fresh temporary root for the whole test. In a @given test, "
            "make one root per example with: with session_root_factory() as settings: ..."
        )
        self.item.stash.setdefault(_real_root_hits_key, []).append(message)
        pytest.fail(message)


def _settings_module() -> Any:
    from . import config

    return config


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Remember the running test (for ``session_root_factory`` and the roots the
    toolkit makes on its own); with ``sessionstate_isolation = strict``, guard the
    real root while it runs."""
    item.config.stash[_current_item_key] = item
    strict = item.config.stash.get(_isolation_key, "none") == "strict"
    if strict:
        _settings_module().default_settings_guard = _RealRootGuard(item)
    roots: Any = sys.modules.get("pytest_sessionstate.testing.roots")
    if roots is not None:  # imported by the toolkit: listen for the roots it makes
        roots.root_listener = lambda label, text: _log_state(item, label, text)
    try:
        yield
    finally:
        item.config.stash[_current_item_key] = None
        if strict:
            _settings_module().default_settings_guard = None
        if roots is not None:
            roots.root_listener = None


def _log_root(item: pytest.Item | None, root: Path, label: str) -> None:
    if item is None:
        return
    log = item.stash.get(_root_log_key, None)
    if log is None:
        from .testing.roots import RootLog

        log = item.stash[_root_log_key] = RootLog()
    log.add(root, label)


def _log_state(item: pytest.Item, label: str, text: str) -> None:
    """Keep the last rendered state of a removed toolkit root, and count them."""
    states = item.stash.setdefault(_states_key, {})
    count = states.get(label, (0, ""))[0]
    states[label] = (count + 1, text)


def _reported_states(item: pytest.Item) -> str:
    blocks = []
    for label, (count, text) in item.stash.get(_states_key, {}).items():
        runs = "the only run" if count == 1 else f"the last of {count} runs"
        blocks.append(f"{label}: {runs}, as its teardown found it (then removed)\n{text}")
    return "\n".join(blocks)


def _reported_roots(item: pytest.Item) -> tuple[list[tuple[Path, str]], list[str]]:
    """The roots to show for ``item``, and notes on the ones left out.

    Of a label with several roots (``session_root_factory`` in a ``@given`` test,
    one per example; ``SessionStateMachine``, one per run), the roots that no
    longer exist are counted, not listed: the one left is the last example's,
    which after a failure is the failing one.  The root that
    ``sessionstate_isolation = fresh`` gave a test that asked for none is shown
    only if it holds something.
    """
    logged: list[tuple[Path, str]] = []
    log = item.stash.get(_root_log_key, None)
    if log is not None:
        logged.extend(log.items())
    per_label: dict[str, int] = {}
    for _, label in logged:
        per_label[label] = per_label.get(label, 0) + 1
    implicit = item.stash.get(_implicit_root_key, None)
    roots: list[tuple[Path, str]] = []
    gone: dict[str, int] = {}
    for root, label in logged:
        if root == implicit and not _has_entries(root):
            continue
        if per_label[label] > 1 and not root.exists():
            gone[label] = gone.get(label, 0) + 1
            continue
        roots.append((root, label))
    notes = [
        f"{label}: {count} earlier root{'' if count == 1 else 's'} not shown "
        "(removed when the next one was made)"
        for label, count in gone.items()
    ]
    shared = item.config.stash.get(_shared_root_key, None)
    if (
        shared is not None
        and "shared_session_root" in getattr(item, "fixturenames", ())
        and all(root != shared for root, _ in logged)
    ):
        roots.append((shared, "shared_session_root"))
    return roots, notes


def _has_entries(root: Path) -> bool:
    try:
        with os.scandir(root) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


#: The plugin's function-scoped fixtures: a ``@given`` test must not ask for them.
_FUNCTION_SCOPED = ("session_root", "session_settings", "make_session", "contention", "crash")

_HEALTH_CHECK_HINT = (
    "pytest-sessionstate: {name!r} is function-scoped, so every example of a @given "
    "test would share one session root. Ask for the session-scoped "
    "session_root_factory fixture instead and make a fresh root per example inside "
    "the test: with session_root_factory() as settings: ... (settings.root is the "
    "root; ContentionSimulator(settings) and CrashInjector(settings) work on it)."
)


def _health_check_hint(call: pytest.CallInfo[Any]) -> str | None:
    """The hint for Hypothesis's function-scoped-fixture health check on our fixtures."""
    excinfo = call.excinfo
    if excinfo is None or type(excinfo.value).__name__ != "FailedHealthCheck":
        return None
    text = str(excinfo.value)
    for name in _FUNCTION_SCOPED:
        if f"function-scoped fixture {name!r}" in text:
            return _HEALTH_CHECK_HINT.format(name=name)
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any, None]:
    """Add the ``sessionstate`` section to the report of a failing test that used
    the fixtures: its roots, their sessions, files and (cut) contents, and the
    state that violated a crash check.  Also: a hint on Hypothesis's health check
    for our function-scoped fixtures, and the failure of a test that swallowed the
    strict isolation error."""
    hint = _health_check_hint(call)
    if hint is not None and hasattr(call.excinfo.value, "add_note"):  # type: ignore[union-attr]
        call.excinfo.value.add_note(hint)  # type: ignore[union-attr]
        hint = None
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    hits = item.stash.get(_real_root_hits_key, None)
    if hits:
        item.stash[_real_root_hits_key] = []
        if report.passed:
            report.outcome = "failed"
            report.longrepr = (
                f"{hits[0]}\n(raised {len(hits)} time(s) during the {report.when} phase and "
                "caught by the code under test)"
            )
    if not report.failed:
        return
    from .testing.report import SECTION_NAME, render, render_crash

    if hint is not None:
        report.sections.append((SECTION_NAME, hint + "\n"))
    roots, notes = _reported_roots(item)
    text = render(roots) if roots else ""
    if notes:
        text += "\n".join(notes) + "\n"
    states = _reported_states(item)
    if states:
        text += ("\n" if text else "") + states
    injectors: list[CrashInjector] = item.stash.get(_injectors_key, [])
    crashes = render_crash(injectors)
    if crashes:
        text += ("\n" if text else "") + crashes
    if text:
        report.sections.append((SECTION_NAME, text))


@pytest.fixture(autouse=True)
def _sessionstate_isolation(request: pytest.FixtureRequest) -> None:
    """``sessionstate_isolation = fresh``: a fresh root for a test that asked for none."""
    if request.config.stash.get(_isolation_key, "none") != "fresh":
        return
    if "session_settings" in request.fixturenames:
        return  # asked for (through session_root, make_session, contention, crash...)
    tmp_path: Path = request.getfixturevalue("tmp_path")
    request.node.stash[_implicit_root_key] = tmp_path / "sessions"
    _log_root(request.node, tmp_path / "sessions", f"session_root ({ISOLATION_INI} = fresh)")
    request.getfixturevalue("session_settings")


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
def session_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """The ``Settings`` in force for the test, made the default for the whole test:
    code calling ``StateManager(session_id)`` lands in its fresh root (``session_root``).

    Its root is ``session_root``: a fresh, empty directory.  ``lock_timeout`` and
    ``durable`` come from the ini options ``sessionstate_lock_timeout`` /
    ``sessionstate_durable`` and the test's ``@pytest.mark.sessionstate(...)``.
    For the whole test these are the default settings (``use_settings``), so code
    under test that calls ``StateManager(session_id)`` lands in the root; the
    previous defaults come back after the test, also when it fails.
    """
    root = tmp_path / "sessions"
    root.mkdir()
    new = _settings_for(request.config, request.node, root)
    _log_root(request.node, root, "session_root")
    with use_settings(new):
        yield new


@pytest.fixture
def session_root(session_settings: Settings) -> Path:
    """A fresh, empty directory (``Path``), the test's session root: for the whole
    test, code calling ``StateManager(session_id)`` without ``settings=`` lands
    there, not in the real root.  Not for @given tests: use session_root_factory.

    For the whole test the default settings point at it (``use_settings``), so
    ``StateManager(session_id)`` without ``settings=`` lands here; restored after
    the test, also when it fails.  If the test fails, its report shows what the
    root holds (section ``sessionstate``).
    """
    return session_settings.root


@pytest.fixture
def make_session(request: pytest.FixtureRequest, session_settings: Settings) -> MakeSession:
    """Make sessions with initial files in the test's fresh root:
    ``make_session(session_id=None, files=None)`` returns the session's
    ``StateManager``.  Annotate with ``pytest_sessionstate.MakeSession``.

    ``None`` as id picks a unique one; ``files`` maps filename to initial
    document, e.g. ``make_session("cart", {"session.json": {"items": []}})``.
    Pass ``settings=`` to make it elsewhere (``Settings(shared_session_root)``).
    """
    from .testing.roots import MakeSession

    item = request.node
    return MakeSession(session_settings, on_root=lambda root: _log_root(item, root, "make_session"))


@pytest.fixture(scope="session")
def session_root_factory(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> SessionRootFactory:
    """A fresh root per Hypothesis example: ``with session_root_factory() as settings:``
    makes a new root the default inside the block.  Session-scoped, so @given tests
    may use it.  Annotate with ``pytest_sessionstate.SessionRootFactory``.

    Each call makes a new, empty directory and makes ``Settings(that directory)``
    the default settings inside the block.  Session-scoped, so a ``@given`` test
    can use it without ``HealthCheck.function_scoped_fixture``: ask for a root
    inside the test body, one per example.  The ini options and the running
    test's ``sessionstate`` marker apply; ``session_root_factory(durable=False)``
    overrides them for one root.  Annotate with
    :class:`pytest_sessionstate.SessionRootFactory`.
    """
    from .testing.roots import SessionRootFactory

    base = tmp_path_factory.mktemp("sessionstate-roots")

    def defaults() -> Settings:
        return _settings_for(pytestconfig, pytestconfig.stash.get(_current_item_key, None), base)

    def on_root(root: Path) -> None:
        _log_root(pytestconfig.stash.get(_current_item_key, None), root, "session_root_factory")

    return SessionRootFactory(base, defaults=defaults, on_root=on_root)


def _make_shared_root(factory: pytest.TempPathFactory | None, uid: str) -> Path:
    """A new directory for the run's shared root, in pytest's basetemp when possible."""
    name = f"sessionstate-shared-{uid[:16]}"
    if factory is None:
        return Path(tempfile.mkdtemp(prefix=name + "-"))
    try:
        return factory.mktemp(name, numbered=False)
    except FileExistsError:  # a reused --testrunuid in a reused --basetemp
        return factory.mktemp(name + "-", numbered=True)


@pytest.fixture(scope="session")
def shared_session_root(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One directory (``Path``) shared by every test of the run, on every xdist
    worker; not made the default: use ``Settings(shared_session_root)``.

    With pytest-xdist the controller makes it and hands its path to the workers,
    so tests on all (local) workers see the same directory; without xdist it is a
    plain directory of the run.  Each run gets its own, inside pytest's basetemp,
    and pytest removes it with the other old temporary directories.  It is not
    made the default settings: use ``Settings(shared_session_root)``.
    """
    workerinput = getattr(pytestconfig, "workerinput", None)
    given = workerinput.get(SHARED_ROOT_WORKERINPUT) if workerinput else None
    if given:
        root = Path(given)
        root.mkdir(parents=True, exist_ok=True)
    else:
        uid = str(workerinput.get("testrunuid")) if workerinput else uuid.uuid4().hex
        root = _make_shared_root(tmp_path_factory, uid)
    pytestconfig.stash[_shared_root_key] = root
    return root


@pytest.fixture
def contention(session_settings: Settings) -> Iterator[ContentionSimulator]:
    """Run code under contention in the test's root: ``run`` (many processes or
    threads at once), ``hold_lock`` / ``stale_lock`` (a busy or a dead holder),
    ``interleave`` (a race replayed on every run).  Annotate with
    ``pytest_sessionstate.ContentionSimulator``.

    Bound to the test's settings (``session_settings``); worker processes still
    running when the test ends are killed.  See docs/contention.rst.
    """
    from .testing.contention import ContentionSimulator

    simulator = ContentionSimulator(session_settings)
    try:
        yield simulator
    finally:
        simulator.close()


@pytest.fixture
def crash(request: pytest.FixtureRequest, session_settings: Settings) -> Iterator[CrashInjector]:
    """Crash code in the test's root: ``explore`` (kill, fail or power-cut a target
    at every write step and check what is left), ``fail_at`` (make one step fail
    with an OSError).  Annotate with ``pytest_sessionstate.CrashInjector``.

    Bound to the test's settings (``session_settings``); faults still installed
    when the test ends are removed.  A failing test's report shows the state
    behind an exploration's first violation.  See docs/crash.rst.
    """
    from .testing.crash import CrashInjector

    injector = CrashInjector(session_settings)
    request.node.stash.setdefault(_injectors_key, []).append(injector)
    try:
        yield injector
    finally:
        injector.close()
