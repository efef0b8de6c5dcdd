"""The operator's command line: list, show, get, set, errors, help, import cost.

Every command runs as a real subprocess of the installed console script (next
to this interpreter) or of ``python -m pytest_sessionstate``, on a real root;
every subprocess is bounded by a timeout.  (``check`` and ``repair``:
test_cli_check.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_sessionstate import Settings, StateManager

TIMEOUT = 60  # bound on every subprocess
SCRIPT = shutil.which("sessionstate", path=str(Path(sys.executable).parent))
COMMANDS = ["list", "show", "get", "set", "check", "repair"]


def sessionstate(*args, root=None, module=False, env=None):
    """Run the command line; its CompletedProcess (text)."""
    assert SCRIPT is not None, "the sessionstate console script is not installed"
    argv = [sys.executable, "-m", "pytest_sessionstate"] if module else [SCRIPT]
    if root is not None:
        argv += ["--root", str(root)]
    argv += [str(arg) for arg in args]
    environment = {k: v for k, v in os.environ.items() if k != "SESSIONSTATE_ROOT"}
    environment.update(env or {})
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, env=environment, check=False
    )


def assert_one_line_error(done, status, *fragments):
    assert done.returncode == status, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert ": error: " in lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def settings(tmp_path):
    root = tmp_path / "root"
    root.mkdir(mode=0o700)
    return Settings(root, durable=False)


@pytest.fixture
def order(settings):
    manager = StateManager("order-42", settings=settings)
    manager.write_json("session.json", {"workflow": {"init": "done"}, "step": 2})
    manager.write_json("profile.json", {"name": "Ada", "city": "Zürich"})
    return manager


# -- list ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", [False, True], ids=["script", "python-m"])
def test_list_shows_every_session_with_its_files_sizes_and_last_change(settings, order, module):
    empty = StateManager("empty", settings=settings)
    empty.write_json("x.json", {})
    empty.delete("x.json")
    done = sessionstate("list", root=settings.root, module=module)
    assert (done.returncode, done.stderr) == (0, "")
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[0] == ["SESSION", "FILE", "SIZE", "MODIFIED"]
    assert rows[1] == ["empty", "-", "-", "-"]
    for row, name in zip(rows[2:], ["profile.json", "session.json"], strict=True):
        info = os.stat(order.session_dir / name)
        assert row[:3] == ["order-42", name, str(info.st_size)]
        assert row[3][:4].isdigit()
        assert "T" in row[3]  # ISO 8601, with its UTC offset


def test_list_json(settings, order):
    done = sessionstate("list", "--json", root=settings.root)
    assert done.returncode == 0
    listing = json.loads(done.stdout)
    assert listing["root"] == str(settings.root)
    [session] = listing["sessions"]
    assert session["session_id"] == "order-42"
    assert [file["name"] for file in session["files"]] == ["profile.json", "session.json"]
    sizes = [file["size"] for file in session["files"]]
    assert sizes == [
        os.stat(order.session_dir / n).st_size for n in ("profile.json", "session.json")
    ]


def test_list_of_an_empty_root_prints_nothing_on_stdout(settings):
    done = sessionstate("list", root=settings.root)
    assert (done.returncode, done.stdout) == (0, "")
    assert "no sessions" in done.stderr


def test_the_default_root_is_sessionstate_root(settings, order):
    done = sessionstate("list", env={"SESSIONSTATE_ROOT": str(settings.root)})
    assert done.returncode == 0
    assert "order-42" in done.stdout


# -- show and get -------------------------------------------------------------------


def test_show_prints_every_document_pretty(settings, order):
    done = sessionstate("show", "order-42", root=settings.root)
    assert (done.returncode, done.stderr) == (0, "")
    blocks = done.stdout.split("\n\n")
    assert blocks[0].startswith("==> order-42/profile.json <==\n")
    assert json.loads(blocks[0].split("\n", 1)[1]) == {"name": "Ada", "city": "Zürich"}
    assert blocks[1].startswith("==> order-42/session.json <==\n")
    assert json.loads(blocks[1].split("\n", 1)[1]) == order.read_json("session.json")
    assert "Zürich" in done.stdout  # not \u00fc: for people


def test_show_one_document(settings, order):
    done = sessionstate("show", "order-42", "session.json", root=settings.root)
    assert done.returncode == 0
    assert json.loads(done.stdout) == {"workflow": {"init": "done"}, "step": 2}
    assert done.stdout.startswith("{\n  ")  # indented


def test_show_reports_a_corrupt_document_and_still_shows_the_others(settings, order):
    (order.session_dir / "broken.json").write_text("{")
    done = sessionstate("show", "order-42", root=settings.root)
    assert done.returncode == 1
    assert "order-42/profile.json" in done.stdout
    assert "order-42/session.json" in done.stdout
    assert "broken.json" not in done.stdout
    assert_one_line_error(
        sessionstate("show", "order-42", "broken.json", root=settings.root), 1, "broken.json"
    )


def test_show_an_empty_session(settings):
    empty = StateManager("empty", settings=settings)
    empty.write_json("x.json", {})
    empty.delete("x.json")
    done = sessionstate("show", "empty", root=settings.root)
    assert (done.returncode, done.stdout) == (0, "")
    assert "no documents" in done.stderr


def test_get_prints_json(settings, order):
    whole = sessionstate("get", "order-42", "session.json", root=settings.root)
    assert whole.returncode == 0
    assert json.loads(whole.stdout) == order.read_json("session.json")
    value = sessionstate("get", "order-42", "session.json", "workflow.init", root=settings.root)
    assert (value.returncode, value.stdout) == (0, '"done"\n')
    number = sessionstate("get", "order-42", "session.json", "step", root=settings.root)
    assert number.stdout == "2\n"


def test_get_with_an_escaped_dot(settings):
    manager = StateManager("s", settings=settings)
    manager.write_json("a.json", {"v1.2": {"x": None}})
    done = sessionstate("get", "s", "a.json", r"v1\.2.x", root=settings.root)
    assert (done.returncode, done.stdout) == (0, "null\n")


def test_get_errors(settings, order):
    root = settings.root
    assert_one_line_error(sessionstate("get", "order-42", "session.json", "nope", root=root), 1)
    assert_one_line_error(
        sessionstate("get", "order-42", "session.json", "step.x", root=root), 1, "not an object"
    )
    assert_one_line_error(
        sessionstate("get", "order-42", "session.json", "a..b", root=root), 2, "dot path"
    )
    assert_one_line_error(sessionstate("get", "order-42", "missing.json", root=root), 1)
    order.session_dir.joinpath("huge.json").write_text('{"n": 1e400}')
    assert_one_line_error(sessionstate("get", "order-42", "huge.json", root=root), 1, "infinity")


# -- set ----------------------------------------------------------------------------


def test_set_updates_through_the_state_manager(settings, order):
    os.chmod(order.session_dir / "session.json", 0o640)  # a file that exists keeps its mode
    done = sessionstate(
        "set", "order-42", "session.json", "workflow.ship", '{"at": 3}', root=settings.root
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert order.read_json("session.json") == {
        "workflow": {"init": "done", "ship": {"at": 3}},
        "step": 2,
    }
    assert stat.S_IMODE(os.stat(order.session_dir / "session.json").st_mode) == 0o640
    assert order.list_files() == ["profile.json", "session.json"]  # no temp left behind


def test_set_on_a_missing_file_is_an_error_unless_create(settings, order):
    done = sessionstate("set", "order-42", "new.json", "a", "1", root=settings.root)
    assert_one_line_error(done, 1, "not found", "--create")
    assert not order.exists("new.json")
    done = sessionstate("set", "fresh", "new.json", "a", "1", root=settings.root)
    assert_one_line_error(done, 1, "--create")
    assert not (settings.root / "fresh").exists()  # no session made by a failed set
    done = sessionstate("set", "--create", "fresh", "new.json", "a.b", "[1]", root=settings.root)
    assert done.returncode == 0, done.stderr
    fresh = StateManager("fresh", settings=settings)
    assert fresh.read_json("new.json") == {"a": {"b": [1]}}
    assert stat.S_IMODE(os.stat(fresh.session_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(fresh.session_dir / "new.json").st_mode) == 0o600


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("done", "quote a string"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("1e400", "infinity"),
        ("{", "invalid JSON"),
    ],
)
def test_set_refuses_what_is_not_strict_json(settings, order, value, fragment):
    before = (order.session_dir / "session.json").read_bytes()
    done = sessionstate("set", "order-42", "session.json", "x", value, root=settings.root)
    assert_one_line_error(done, 2, fragment)
    assert (order.session_dir / "session.json").read_bytes() == before


def test_set_through_a_value_that_is_not_an_object_changes_nothing(settings, order):
    before = (order.session_dir / "session.json").read_bytes()
    done = sessionstate("set", "order-42", "session.json", "step.x", "1", root=settings.root)
    assert_one_line_error(done, 1, "step")
    assert (order.session_dir / "session.json").read_bytes() == before


def test_set_waits_for_the_lock_and_fails_clearly(settings, order, contention):
    with contention.hold_lock(order):
        done = sessionstate(
            "set", "order-42", "session.json", "x", "1", "--lock-timeout", "0", root=settings.root
        )
    assert_one_line_error(done, 1, "order-42")
    assert "x" not in order.read_json("session.json")


# -- errors, help, exit statuses -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "fragment"),
    [
        (["--root", "{missing}", "list"], 2, "does not exist"),
        (["--root", "{file}", "check"], 2, "not a directory"),
        (["--root", "", "list"], 2, "root"),
        (["--root", "{root}", "show", "nope"], 1, "not found"),
        (["--root", "{root}", "show", "../etc"], 2, "invalid session id"),
        (["--root", "{root}", "get", "order-42", "CON"], 2, "invalid filename"),
        (["--root", "{root}", "get", "order-42", "broken.json"], 1, "not valid"),
        (["--root", "{root}"], 2, "command is required"),
        (["--root", "{root}", "frobnicate"], 2, "invalid choice"),
        (["--root", "{root}", "check", "--bogus"], 2, "unrecognized arguments"),
        (["--root", "{root}", "get"], 2, "required"),
        (["--root", "{root}", "repair", "--lock-timeout", "soon"], 2, "seconds"),
    ],
)
@pytest.mark.parametrize("module", [False, True], ids=["script", "python-m"])
def test_errors_are_one_line_on_stderr_never_a_traceback(
    settings, order, tmp_path, args, status, fragment, module
):
    (order.session_dir / "broken.json").write_text("[")
    (tmp_path / "file").write_text("")
    names = {"root": settings.root, "missing": tmp_path / "missing", "file": tmp_path / "file"}
    done = sessionstate(*[arg.format(**names) for arg in args], module=module)
    assert_one_line_error(done, status, fragment)
    prog = "python -m pytest_sessionstate" if module else "sessionstate"
    assert done.stderr.startswith(f"{prog}")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_everywhere(command):
    done = sessionstate(*([command] if command else []), "--help")
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("usage: sessionstate")
    if command is None:
        for name in COMMANDS:
            assert name in done.stdout


def test_version():
    from pytest_sessionstate import __version__

    done = sessionstate("--version")
    assert (done.returncode, done.stdout) == (0, f"sessionstate {__version__}\n")


def test_a_closed_pipe_ends_it_quietly(settings):
    # ``sessionstate get ... | head -1``: the reader goes away after the first line.
    manager = StateManager("big", settings=settings)
    # ~5 MB: more than a pipe holds (1 MB on some kernels).
    manager.write_json("a.json", {f"key-{i}": "x" * 100 for i in range(40_000)})
    with subprocess.Popen(
        [SCRIPT, "--root", str(settings.root), "get", "big", "a.json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout.readline() == b"{\n"
        process.stdout.close()
        status = process.wait(TIMEOUT)
        stderr = process.stderr.read()
    assert status == 141
    assert stderr == b""


def test_output_survives_a_terminal_that_cannot_encode_it(settings, order):
    done = sessionstate(
        "show", "order-42", "profile.json", root=settings.root, env={"PYTHONIOENCODING": "ascii"}
    )
    assert done.returncode == 0
    assert "Z\\xfcrich" in done.stdout


def test_the_command_line_imports_no_test_library(settings, order):
    # In a fresh interpreter: what this test process has imported cannot hide anything.
    code = (
        "import json, sys\n"
        "from pytest_sessionstate.cli import main\n"
        f"for args in (['check'], ['list'], ['show', 'order-42'], ['repair', '--dry-run']):\n"
        f"    main(['--root', {str(settings.root)!r}, *args])\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    modules = {name.split(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}
    assert "pytest_sessionstate" in modules
    assert not modules & {"pytest", "_pytest", "hypothesis", "freezegun", "time_machine"}


@pytest.mark.parametrize(
    "args",
    [["get", "s", "pipe.json"], ["show", "s", "pipe.json"], ["set", "s", "pipe.json", "a", "1"]],
    ids=["get", "show", "set"],
)
def test_a_fifo_in_place_of_a_document_is_refused_not_waited_on(settings, args):
    manager = StateManager("s", settings=settings)
    manager.write_json("session.json", {})
    os.mkfifo(manager.session_dir / "pipe.json", 0o600)
    done = sessionstate(*args, root=settings.root)  # bounded: a hang fails the test
    assert_one_line_error(done, 1, "FIFO")


def test_values_and_paths_that_look_like_options(settings, order):
    root = settings.root
    assert sessionstate("set", "order-42", "session.json", "n", "-1.5", root=root).returncode == 0
    assert (
        sessionstate("set", "order-42", "session.json", "--", "-k", "2", root=root).returncode == 0
    )
    assert order.read_json("session.json")["n"] == -1.5
    assert sessionstate("get", "order-42", "session.json", "--", "-k", root=root).stdout == "2\n"
