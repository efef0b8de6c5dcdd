"""Session ids and filenames: what is accepted, what is refused, and why."""

from __future__ import annotations

import pytest

from pytest_sessionstate import SessionValueError
from pytest_sessionstate.names import (
    MAX_NAME_LENGTH,
    WINDOWS_RESERVED_NAMES,
    is_valid_name,
    validate_name,
)

VALID = [
    "a",
    "session-1",
    "state.json",
    "A_b-C.d.e",
    "0",
    "x" * MAX_NAME_LENGTH,
    "a..b",  # dots inside a name are harmless: it stays one path component
    "trailing.",
    "COM10",  # not reserved: only COM1..COM9
    "CONSOLE",
    "console.json",
    "nul_file",
]

INVALID = [
    "",
    ".",
    "..",
    ".hidden",
    ".lock",
    "../etc",
    "a/b",
    "/abs",
    "/",
    "a\\b",
    "\\server\\share",
    "C:\\x",
    "C:x",
    "a\x00b",
    "\x00",
    "x" * (MAX_NAME_LENGTH + 1),
    "caf\u00e9",
    "\u0441ession",  # Cyrillic es
    "\uff0e\uff0e",  # fullwidth dots
    "a b",
    "tab\t",
    "new\nline",
    "a:b",
    "star*",
    "q?",
    "CON",
    "con",
    "Con.json",
    "NUL",
    "nul.txt",
    "PRN",
    "AUX.tar.gz",
    "COM1",
    "com9.json",
    "LPT1",
    "lpt9",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_pass_unchanged(name):
    assert is_valid_name(name)
    assert validate_name(name, "session id") is name


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names_raise_session_value_error(name):
    assert not is_valid_name(name)
    with pytest.raises(SessionValueError) as info:
        validate_name(name, "filename")
    err = info.value
    assert isinstance(err, ValueError)
    assert "filename" in str(err)
    assert err.details["kind"] == "filename"
    assert err.details["value"] == repr(name)
    assert err.details["problem"]


@pytest.mark.parametrize("value", [None, 1, b"bytes", ["a"], ("a",), 1.5])
def test_non_str_names_are_refused(value):
    assert not is_valid_name(value)
    with pytest.raises(SessionValueError, match="must be a str"):
        validate_name(value)


def test_length_limit_is_exactly_255():
    assert MAX_NAME_LENGTH == 255
    assert is_valid_name("a" * 255)
    with pytest.raises(SessionValueError, match="at most 255"):
        validate_name("a" * 256)


def test_every_windows_reserved_name_is_refused_in_any_case_and_with_extensions():
    expected = {"CON", "PRN", "AUX", "NUL"} | {
        f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10)
    }
    assert expected == set(WINDOWS_RESERVED_NAMES)
    for reserved in expected:
        for spelling in (reserved, reserved.lower(), reserved.title(), f"{reserved}.json"):
            assert not is_valid_name(spelling), spelling


def test_messages_say_which_rule_is_broken():
    cases = {
        "": "empty",
        "a/b": "ASCII letters",
        ".x": "start with '.'",
        "CON": "Windows",
    }
    for name, words in cases.items():
        with pytest.raises(SessionValueError, match=words):
            validate_name(name)
