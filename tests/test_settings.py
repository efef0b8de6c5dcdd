"""Settings, the module default from the environment, and use_settings."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import pytest_sessionstate
from pytest_sessionstate import (
    SessionValueError,
    Settings,
    StateManager,
    current_settings,
    settings,
    use_settings,
)
from pytest_sessionstate.config import ROOT_ENV_VAR, default_root


def test_constructor_defaults_and_attributes(tmp_path):
    s = Settings(tmp_path)
    assert s.root == tmp_path
    assert isinstance(s.root, Path)
    assert s.lock_timeout == 30.0
    assert isinstance(s.lock_timeout, float)
    assert s.durable is True
    t = Settings(str(tmp_path), lock_timeout=2, durable=False)
    assert t.root == tmp_path
    assert t.lock_timeout == 2.0
    assert t.durable is False


def test_relative_root_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Settings("sessions").root == tmp_path / "sessions"


def test_session_lock_timeout_is_a_read_only_alias(tmp_path):
    s = Settings(tmp_path, lock_timeout=7.5)
    assert s.session_lock_timeout == 7.5
    with pytest.raises(AttributeError):
        s.session_lock_timeout = 1.0
    with pytest.raises(AttributeError):
        s.lock_timeout = 1.0
    assert s.lock_timeout == 7.5


@pytest.mark.parametrize("timeout", [0, 0.0, -1, 0.25])
def test_zero_and_negative_lock_timeouts_are_kept(tmp_path, timeout):
    assert Settings(tmp_path, lock_timeout=timeout).lock_timeout == float(timeout)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"root": ""},
        {"root": None},
        {"root": 3},
        {"lock_timeout": float("nan")},
        {"lock_timeout": "5"},
        {"lock_timeout": True},
        {"lock_timeout": None},
        {"durable": 1},
        {"durable": "yes"},
    ],
)
def test_bad_arguments_raise_session_value_error(tmp_path, kwargs):
    args = {"root": tmp_path, **kwargs}
    root = args.pop("root")
    with pytest.raises(SessionValueError):
        Settings(root, **args)


def test_get_session_path_validates_and_joins(tmp_path):
    s = Settings(tmp_path)
    assert s.get_session_path("abc-1") == tmp_path / "abc-1"
    for bad in ["..", "a/b", "", ".x", "CON", "\x00", "/etc"]:
        with pytest.raises(SessionValueError):
            s.get_session_path(bad)
    assert list(tmp_path.iterdir()) == []  # validation touched nothing


def test_get_session_path_refuses_a_symlink(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "evil").symlink_to(outside)
    with pytest.raises(SessionValueError, match="symlink"):
        Settings(root).get_session_path("evil")


def test_replace_changes_only_what_is_given(tmp_path):
    s = Settings(tmp_path, lock_timeout=5, durable=False)
    assert s.replace(lock_timeout=0) == Settings(tmp_path, lock_timeout=0, durable=False)
    assert s.replace(durable=True).durable is True
    assert s.replace(root=tmp_path / "x").root == tmp_path / "x"
    assert s.replace() == s
    assert s.lock_timeout == 5.0  # the original is unchanged


def test_equality_hash_repr_and_pickle(tmp_path):
    a = Settings(tmp_path, lock_timeout=1, durable=False)
    b = Settings(str(tmp_path), lock_timeout=1.0, durable=False)
    assert a == b
    assert hash(a) == hash(b)
    assert a != Settings(tmp_path)
    assert str(tmp_path) in repr(a)
    assert pickle.loads(pickle.dumps(a)) == a


def test_module_default_is_a_settings():
    assert isinstance(settings, Settings)
    assert pytest_sessionstate.settings is settings


def test_the_settings_module_is_not_shadowed_by_the_default_object(monkeypatch, tmp_path):
    # The module has a name of its own, so a dotted path reaches it, as monkeypatch does.
    import importlib

    module = importlib.import_module("pytest_sessionstate.config")
    assert module.Settings is Settings
    assert module.settings is settings
    monkeypatch.setattr("pytest_sessionstate.config.ROOT_ENV_VAR", "SOME_OTHER_VARIABLE")
    assert module.ROOT_ENV_VAR == "SOME_OTHER_VARIABLE"
    # ... while the public name stays the original code's default Settings object.
    assert isinstance(pytest_sessionstate.settings, Settings)


def _default_root_in_subprocess(env):
    code = "from pytest_sessionstate import settings; print(settings.root)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return Path(out.stdout.strip())


def test_root_comes_from_the_environment(tmp_path):
    env = {**os.environ, ROOT_ENV_VAR: str(tmp_path / "from-env")}
    assert _default_root_in_subprocess(env) == tmp_path / "from-env"


def test_documented_default_root_without_the_environment_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != ROOT_ENV_VAR}
    env["XDG_STATE_HOME"] = str(tmp_path / "xdg")
    assert _default_root_in_subprocess(env) == tmp_path / "xdg" / "sessionstate"
    env.pop("XDG_STATE_HOME")
    env["HOME"] = str(tmp_path / "home")
    expected = tmp_path / "home" / ".local" / "state" / "sessionstate"
    assert _default_root_in_subprocess(env) == expected


def test_default_root_function_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert default_root() == tmp_path / "sessionstate"


def test_use_settings_is_the_default_for_state_managers(tmp_path):
    mine = Settings(tmp_path, durable=False)
    assert current_settings() is not mine
    with use_settings(mine) as active:
        assert active is mine
        assert current_settings() is mine
        manager = StateManager("s1")
        assert manager.settings is mine
        assert manager.session_dir == tmp_path / "s1"
        manager.write_json("a.json", {"x": 1})
    assert (tmp_path / "s1" / "a.json").is_file()
    assert current_settings() is settings


def test_explicit_settings_win_over_use_settings(tmp_path):
    with use_settings(Settings(tmp_path / "a")):
        explicit = Settings(tmp_path / "b")
        assert StateManager("s", settings=explicit).session_dir == tmp_path / "b" / "s"


def test_use_settings_nests_and_restores_also_on_exception(tmp_path):
    outer, inner = Settings(tmp_path / "outer"), Settings(tmp_path / "inner")
    before = current_settings()
    with use_settings(outer):
        seen = []

        def fail_inside():
            with use_settings(inner):
                seen.append(current_settings())
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            fail_inside()
        assert seen == [inner]
        assert current_settings() is outer
        with use_settings(inner):
            assert current_settings() is inner
        assert current_settings() is outer
    assert current_settings() is before


def test_use_settings_is_process_wide(tmp_path):
    mine = Settings(tmp_path)
    seen = []
    started = threading.Event()
    check = threading.Event()

    def worker():
        started.set()
        check.wait(10)
        seen.append(current_settings())

    thread = threading.Thread(target=worker)
    thread.start()  # started before use_settings, reads while it is active
    assert started.wait(10)
    with use_settings(mine):
        inner_thread_seen = []
        inner = threading.Thread(
            target=lambda: inner_thread_seen.append(StateManager("x").settings)
        )
        inner.start()
        inner.join(10)
        check.set()
        thread.join(10)
    assert not thread.is_alive()
    assert seen == [mine]
    assert inner_thread_seen == [mine]


def test_use_settings_refuses_other_types(tmp_path):
    with pytest.raises(TypeError), use_settings(str(tmp_path)):  # type: ignore[arg-type]
        pass
