"""The operator's command line: ``sessionstate [--root ROOT] COMMAND ...``.

Also run as ``python -m pytest_sessionstate``.  Commands:

* ``list``: every session with its files, sizes and last change;
* ``show SESSION [FILE]``: the documents, pretty-printed;
* ``get SESSION FILE [DOTPATH]``: a document or one value, printed as JSON;
* ``set SESSION FILE DOTPATH JSON``: one update through the real
  :class:`~pytest_sessionstate.StateManager` (locked, durable, validated);
* ``check``: a read-only check of the root (:mod:`pytest_sessionstate.rootcheck`);
* ``repair``: removes orphaned temp files and empty sessions
  (:mod:`pytest_sessionstate.rootrepair`).

Exit status: 0 success (``check``: nothing found), 1 failure or findings, 2 bad
usage (unknown option, invalid id, filename, dot path or JSON, unusable root),
130 interrupted, 141 output pipe closed (``| head``).  Errors are one line on
stderr, never a traceback; ``SESSIONSTATE_DEBUG=1`` shows the traceback of an
unexpected error.

Only the standard library's ``argparse`` and the core are imported: the command
starts fast and never imports pytest or hypothesis.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import stat
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NoReturn

from . import __version__, dotpath
from .config import ROOT_ENV_VAR, Settings, current_settings
from .errors import SessionError, SessionNotFoundError, SessionValueError
from .names import validate_name
from .rootcheck import article, check_root, open_root, type_of
from .rootrepair import Action, repair_root
from .state import StateManager, get_session_or_raise, list_sessions

__all__ = ["EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

#: Success; for ``check``, nothing found.
EXIT_OK = 0
#: The operation failed, or ``check`` / ``repair --dry-run`` found something.
EXIT_FINDINGS = 1
#: Bad usage: an unknown option, an invalid argument, an unusable root.
EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130
_EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a process killed by it

_DEBUG_ENV_VAR = "SESSIONSTATE_DEBUG"


class UsageError(Exception):
    """Bad usage: reported as one line, exit status 2."""


class Failure(Exception):
    """The operation failed: reported as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (and a pointer to ``--help``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- helpers ---------------------------------------------------------------------------


def _shown(text: str) -> str:
    """``text`` as is if it is plain printable ASCII, else its escaped ``repr``.

    Names found in a root may hold anything (terminal escapes, undecodable bytes):
    they are never written raw to the operator's terminal.
    """
    return text if text.isascii() and text.isprintable() else repr(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


def _document_json(value: Any, where: str) -> str:
    """``value`` as strict JSON; a number that was read as infinity (``1e400``) fails."""
    try:
        return _dumps(value)
    except ValueError:
        raise Failure(
            f"{where} holds a number too large for a float (read as infinity: not JSON)"
        ) from None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


_CHUNK = 1 << 16


def _write(text: str = "") -> None:
    """Write a line; a long one in flushed chunks.

    A reader that goes away (``| head``) in the middle of one big write makes
    that write short, and the standard buffered writer then drops the rest
    without an error: in chunks, the next one fails with BrokenPipeError.
    """
    text += "\n"
    if len(text) <= _CHUNK:
        sys.stdout.write(text)
        return
    for start in range(0, len(text), _CHUNK):
        sys.stdout.write(text[start : start + _CHUNK])
        sys.stdout.flush()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}")
    return value


def _settings(args: argparse.Namespace, *, lock_timeout: float | None = None) -> Settings:
    """The settings for ``--root`` (default: the settings in force), the root checked."""
    root = args.root if args.root is not None else current_settings().root
    try:
        settings = Settings(root)
        if lock_timeout is not None:
            settings = settings.replace(lock_timeout=lock_timeout)
    except SessionValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        with open_root(settings.root):
            pass
    except SessionValueError as exc:
        raise UsageError(str(exc)) from None
    return settings


def _valid(name: str, kind: str) -> str:
    try:
        return validate_name(name, kind)
    except SessionValueError as exc:
        raise UsageError(str(exc)) from None


def _segments(path: str) -> tuple[str, ...]:
    try:
        return dotpath.split(path)
    except SessionValueError as exc:
        raise UsageError(str(exc)) from None


def _reject_constant(token: str) -> NoReturn:
    raise ValueError(f"{token} is not JSON (RFC 8259)")


def _finite(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"{literal} is too large for a float (it would be infinity)")
    return value


def _parse_json_argument(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        quotable = str(exc).startswith("Expecting value") and text[:1] not in ("[", "{", '"')
        hint = f" (quote a string: '\"{text}\"')" if quotable else ""
        raise UsageError(f"invalid JSON value {text!r}: {exc}{hint}") from None


_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


# -- commands --------------------------------------------------------------------------


def _refuse_special(manager: StateManager, filename: str) -> None:
    """Refuse a document that is a FIFO, a device or a directory, before it is read.

    Opening a FIFO for reading blocks until a writer comes: the command would hang.
    (A symlink is refused by the state manager itself.)
    """
    try:
        info = os.lstat(manager.session_dir / filename)
    except OSError:
        return  # missing: the state manager words the error
    if not stat.S_ISREG(info.st_mode) and not stat.S_ISLNK(info.st_mode):
        raise Failure(
            f"{manager.session_id}/{filename} is {article(type_of(info.st_mode))}, not a"
            " regular file; refusing to read it"
        )


def _modified(mtime: float) -> str:
    return datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="seconds")


def _cmd_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
    sessions: list[tuple[str, list[dict[str, Any]]]] = []
    for session_id in list_sessions(settings=settings):
        manager = StateManager(session_id, settings=settings)
        files: list[dict[str, Any]] = []
        for name in manager.list_files():
            try:
                info = os.stat(manager.session_dir / name, follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted meanwhile
            files.append({"name": name, "size": info.st_size, "modified": _modified(info.st_mtime)})
        sessions.append((session_id, files))
    if args.json:
        document = {
            "version": 1,
            "root": str(settings.root),
            "sessions": [{"session_id": sid, "files": files} for sid, files in sessions],
        }
        _write(_dumps(document))
        return EXIT_OK
    if not sessions:
        print(f"no sessions in {_shown(str(settings.root))}", file=sys.stderr)
        return EXIT_OK
    rows = [("SESSION", "FILE", "SIZE", "MODIFIED")]
    for session_id, files in sessions:
        if not files:
            rows.append((session_id, "-", "-", "-"))
        rows.extend(
            (session_id, file["name"], str(file["size"]), file["modified"]) for file in files
        )
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for session_id, name, size, modified in rows:
        _write(f"{session_id:<{widths[0]}}  {name:<{widths[1]}}  {size:>{widths[2]}}  {modified}")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    session_id = _valid(args.session, "session id")
    names = [_valid(args.file, "filename")] if args.file is not None else None
    manager = get_session_or_raise(session_id, settings=settings)
    if names is None:
        names = manager.list_files()
        if not names:
            print(f"session {session_id!r} has no documents", file=sys.stderr)
            return EXIT_OK
        headers = True
    else:
        headers = False
    status = EXIT_OK
    for index, name in enumerate(names):
        try:
            _refuse_special(manager, name)
            document = manager.read_json(name)
        except SessionNotFoundError:
            if not headers:
                raise
            continue  # deleted since it was listed
        except (SessionError, Failure) as exc:
            if not headers:
                raise
            _error(args.prog, str(exc))
            status = EXIT_FINDINGS
            continue
        try:
            text = _document_json(document, f"{session_id}/{name}")
        except Failure as exc:
            if not headers:
                raise
            _error(args.prog, str(exc))
            status = EXIT_FINDINGS
            continue
        if headers:
            if index:
                _write()
            _write(f"==> {session_id}/{name} <==")
        _write(text)
    return status


def _cmd_get(args: argparse.Namespace) -> int:
    settings = _settings(args)
    session_id = _valid(args.session, "session id")
    filename = _valid(args.file, "filename")
    segments = _segments(args.dotpath) if args.dotpath is not None else ()
    manager = get_session_or_raise(session_id, settings=settings)
    _refuse_special(manager, filename)
    value: Any = manager.read_json(filename)
    for depth, segment in enumerate(segments):
        if not isinstance(value, dict):
            where = dotpath.join(segments[:depth])
            raise Failure(
                f"{args.dotpath!r} in {session_id}/{filename}: {where!r} is a JSON "
                f"{_json_type(value)}, not an object"
            )
        if segment not in value:
            raise Failure(f"no {dotpath.join(segments[: depth + 1])!r} in {session_id}/{filename}")
        value = value[segment]
    _write(_document_json(value, f"{session_id}/{filename}"))
    return EXIT_OK


def _cmd_set(args: argparse.Namespace) -> int:
    settings = _settings(args, lock_timeout=args.lock_timeout)
    session_id = _valid(args.session, "session id")
    filename = _valid(args.file, "filename")
    segments = _segments(args.dotpath)
    value = _parse_json_argument(args.value)
    manager = StateManager(session_id, settings=settings)
    _refuse_special(manager, filename)
    if args.create:
        with manager.transaction(filename, default={}) as document:
            updated = dotpath.apply_updates(document, {segments: value})
            document.clear()
            document.update(updated)
        return EXIT_OK
    try:
        manager.update_json(filename, {segments: value})
    except SessionNotFoundError as exc:
        raise Failure(f"{exc} (pass --create to create it)") from None
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    report = check_root(settings.root)
    if args.json:
        _write(_dumps(report.to_json()))
        return EXIT_OK if report.clean else EXIT_FINDINGS
    for finding in report.findings:
        _write(f"{finding.kind:<15} {_shown(finding.path)}: {finding.message}")
    held = 0
    for holder in report.holders:
        who = f"pid {holder.pid}" if holder.pid is not None else "a process (pid not visible here)"
        if holder.command:
            who += f" ({_shown(holder.command)})"
        if holder.waiting:
            _write(f"{'waiting':<15} {holder.session_id}: {who} waits for the lock")
        else:
            held += 1
            _write(f"{'locked':<15} {holder.session_id}: held by {who}")
    where = (
        f"{_shown(str(report.root))} ({_plural(len(report.sessions), 'session')}, "
        f"{_plural(report.documents, 'document')})"
    )
    summary = (
        f"clean: {where}"
        if report.clean
        else f"{_plural(len(report.findings), 'problem')} in {where}"
    )
    if held:
        summary += f"; {_plural(held, 'lock')} held right now (normal operation)"
    if not report.locks_visible:
        summary += "; lock holders cannot be seen here (no /proc/locks)"
    _write(summary)
    return EXIT_OK if report.clean else EXIT_FINDINGS


def _cmd_repair(args: argparse.Namespace) -> int:
    settings = _settings(args)

    def show(action: Action) -> None:
        _write(action.message)
        sys.stdout.flush()  # said as it is done

    report = repair_root(
        settings.root, dry_run=args.dry_run, lock_timeout=args.lock_timeout, on_action=show
    )
    if not report.actions:
        _write(f"nothing to repair in {_shown(str(report.check.root))}")
    left = report.unrepaired
    if left:
        verb = "needs" if left == 1 else "need"
        _write(
            f"{_plural(left, 'other problem')} {verb} a person (repair never touches a"
            " document): see 'check'"
        )
    if args.dry_run:
        return EXIT_FINDINGS if report.actions else EXIT_OK
    return EXIT_FINDINGS if report.pending else EXIT_OK


# -- the parser ------------------------------------------------------------------------

_EPILOG = f"""\
The root is --root, else ${ROOT_ENV_VAR}, else the default root
(~/.local/state/sessionstate). Exit status: 0 success (check: clean), 1 failure
or problems found, 2 bad usage. Each command has its own --help."""


def build_parser(prog: str = "sessionstate") -> argparse.ArgumentParser:
    """The argument parser of the command line.

    :param prog: the program name shown in usage and errors.
    """
    parser = _Parser(
        prog=prog,
        description="Look at, check and repair a root of pytest-sessionstate sessions.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--root",
        metavar="ROOT",
        help=f"the directory that holds the sessions (default: ${ROOT_ENV_VAR}, "
        "else the settings' default root)",
    )
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, description: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=description)
        sub.set_defaults(handler=handler)
        return sub

    sub = command(
        "list",
        _cmd_list,
        "every session with its files, sizes and last change",
        "List every session of the root with its files, their sizes in bytes and their"
        " last change (local time). A session without documents shows '-'.",
    )
    sub.add_argument("--json", action="store_true", help="print JSON for machines")

    sub = command(
        "show",
        _cmd_show,
        "the documents of a session, pretty-printed",
        "Print the documents of a session (or one of them), pretty-printed. A corrupt"
        " document is reported on stderr and the others are still shown (exit status 1).",
    )
    sub.add_argument("session", metavar="SESSION", help="the session id")
    sub.add_argument("file", metavar="FILE", nargs="?", help="only this document")

    sub = command(
        "get",
        _cmd_get,
        "a document or one value in it, as JSON",
        "Print a document, or the value at DOTPATH in it, as JSON. In a dot path '.'"
        " separates keys, '\\.' is a literal dot and '\\\\' a literal backslash.",
    )
    sub.add_argument("session", metavar="SESSION", help="the session id")
    sub.add_argument("file", metavar="FILE", help="the document's filename")
    sub.add_argument("dotpath", metavar="DOTPATH", nargs="?", help="the key path to print")

    sub = command(
        "set",
        _cmd_set,
        "set one value, under the session's lock",
        "Set the value at DOTPATH of a document to JSON, through the state manager's"
        " update_json: under the session's lock, validated, atomic and durable. Missing"
        " objects on the path are created. A missing document (or session) is an error"
        " unless --create is given. JSON is strict: quote strings ('\"done\"'); NaN and"
        " Infinity are refused.",
    )
    sub.add_argument("session", metavar="SESSION", help="the session id")
    sub.add_argument("file", metavar="FILE", help="the document's filename")
    sub.add_argument("dotpath", metavar="DOTPATH", help="the key path to set")
    sub.add_argument("value", metavar="JSON", help="the new value, as JSON")
    sub.add_argument(
        "--create",
        action="store_true",
        help="create the document (and the session) if missing, starting from {}",
    )
    sub.add_argument(
        "--lock-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=None,
        help="wait at most this long for the lock (default: the settings' 30 s)",
    )

    sub = command(
        "check",
        _cmd_check,
        "check the root; exit 1 if anything is wrong",
        "Check the root without changing anything (no lock is taken, nothing is"
        " created): documents that are not strict JSON objects, orphaned temp files,"
        " entries that are not regular files, symlinks, modes wider than 0600/0700,"
        " entries owned by another user than the root's owner, stray names, empty"
        " sessions. Locks held right now are shown with their holder's pid (normal"
        " operation, not a problem). Exit status 0 when clean, 1 when anything is found.",
    )
    sub.add_argument("--json", action="store_true", help="print the report as JSON")

    sub = command(
        "repair",
        _cmd_repair,
        "remove orphaned temp files and empty sessions",
        "Remove what a crash may leave: orphaned temp files and empty sessions, each"
        " under its session's lock. Never touches a document, corrupt or not. A session"
        " in use is skipped (exit status 1). With --dry-run, says what it would remove"
        " (exit status 1 if anything) and takes no lock.",
    )
    sub.add_argument(
        "--dry-run", action="store_true", help="say what would be removed, remove nothing"
    )
    sub.add_argument(
        "--lock-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=0.0,
        help="wait this long for a session in use (default: 0, skip it at once)",
    )
    return parser


# -- running ---------------------------------------------------------------------------


def _error(prog: str, message: str) -> None:
    text = " ".join(message.split("\n"))
    print(f"{prog}: error: {text}", file=sys.stderr)


def _run(argv: Sequence[str] | None, prog: str) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
        args.prog = prog
        if args.command is None:
            raise UsageError(
                "a command is required: list, show, get, set, check or repair"
                f" (see '{prog} --help')"
            )
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UsageError as exc:
        _error(prog, str(exc))
        return EXIT_USAGE
    except (Failure, SessionError) as exc:
        _error(prog, str(exc))
        return EXIT_FINDINGS
    except BrokenPipeError:
        raise
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _error(prog, f"{exc.strerror or exc}{where}")
        return EXIT_FINDINGS


def main(argv: Sequence[str] | None = None, *, prog: str = "sessionstate") -> int:
    """Run the command line; return its exit status.

    :param argv: the arguments (default: ``sys.argv[1:]``).
    :param prog: the program name shown in usage and errors.
    """
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")  # never fail on what a document holds
    try:
        try:
            code = _run(argv, prog)
        except SystemExit as exc:  # --help, --version
            code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly.  Python would report the
        # failed flush at exit, so stdout now goes nowhere.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        return _EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        _error(prog, "interrupted")
        return _EXIT_INTERRUPTED
    except Exception as exc:
        if os.environ.get(_DEBUG_ENV_VAR):
            raise
        _error(
            prog,
            f"unexpected {type(exc).__name__}: {exc} (set {_DEBUG_ENV_VAR}=1 for the traceback)",
        )
        return EXIT_FINDINGS
    return code
