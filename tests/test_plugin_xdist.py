"""The plugin under pytest-xdist (real ``-n 2`` runs in subprocesses) and without it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_sessionstate import Settings, list_sessions

pytest_plugins = ["pytester"]

pytest.importorskip("xdist")

# Each test of the inner suite records where it ran and which roots it saw, in a
# directory of the outer test, so the outer test can compare across workers.
RECORDING_TESTS = """
import json
from pathlib import Path

import pytest
from pytest_sessionstate import Settings, StateManager

RECORDS = Path({records!r})


@pytest.mark.parametrize("n", range({count}))
def test_record(n, shared_session_root, session_root, request):
    workerinput = getattr(request.config, "workerinput", None)
    worker = workerinput["workerid"] if workerinput else "none"
    StateManager(f"from-{{n}}", settings=Settings(shared_session_root)).write_json(
        "who.json", {{"worker": worker}}
    )
    record = {{"worker": worker, "shared": str(shared_session_root), "root": str(session_root)}}
    (RECORDS / f"{{n}}.json").write_text(json.dumps(record))
"""


def _run_recording(pytester: pytest.Pytester, count: int, *args: str) -> list[dict[str, str]]:
    records = pytester.path / f"records-{len(list(pytester.path.glob('records-*')))}"
    records.mkdir()
    pytester.makepyfile(test_recording=RECORDING_TESTS.format(records=str(records), count=count))
    result = pytester.runpytest_subprocess(*args, timeout=240)
    result.assert_outcomes(passed=count)
    found = [json.loads(path.read_text()) for path in sorted(records.glob("*.json"))]
    assert len(found) == count
    return found


def test_two_workers_share_one_root_and_get_distinct_session_roots(
    pytester: pytest.Pytester,
) -> None:
    records = _run_recording(pytester, 8, "-n", "2", "-p", "no:randomly")
    assert {r["worker"] for r in records} == {"gw0", "gw1"}
    shared = {r["shared"] for r in records}
    assert len(shared) == 1
    shared_root = Path(shared.pop())
    # Every worker's sessions landed in the one directory.
    assert list_sessions(settings=Settings(shared_root)) == sorted(f"from-{n}" for n in range(8))
    # It sits in the controller's basetemp; each worker's basetemp is below it.
    assert shared_root.parent.name.startswith("runpytest-")
    roots = [Path(r["root"]) for r in records]
    assert len(set(roots)) == 8
    for root, record in zip(roots, records, strict=True):
        assert f"popen-{record['worker']}" in root.parts
        assert shared_root.parent in root.parents


def test_without_xdist_the_shared_root_is_a_plain_run_directory(pytester: pytest.Pytester) -> None:
    records = _run_recording(pytester, 3, "-p", "no:xdist")
    assert {r["worker"] for r in records} == {"none"}
    shared = {r["shared"] for r in records}
    assert len(shared) == 1
    shared_root = Path(shared.pop())
    assert shared_root.parent.name.startswith("runpytest-")
    assert list_sessions(settings=Settings(shared_root)) == ["from-0", "from-1", "from-2"]


def test_consecutive_runs_do_not_share_a_root(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_once="""
        from pytest_sessionstate import Settings, StateManager

        def test_nothing_left_by_an_earlier_run(shared_session_root):
            marker = StateManager("earlier-run", settings=Settings(shared_session_root))
            assert not marker.exists()
            marker.write_json("m.json", {"left": True})
        """
    )
    seen = []
    for _ in range(2):
        result = pytester.runpytest_subprocess("-n", "2", timeout=240)
        result.assert_outcomes(passed=1)
        found = pytester.path.glob("runpytest-[0-9]*/sessionstate-shared-*")
        seen.append(sorted(path for path in found if not path.is_symlink()))
    first, second = seen
    assert len(first) == 1
    assert len(second) == 2
    new = [path for path in second if path not in first]
    assert len(new) == 1
    assert new[0] != first[0]
    assert list_sessions(settings=Settings(new[0])) == ["earlier-run"]


def test_failure_section_crosses_from_the_worker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_fails(make_session):
            make_session("on-a-worker", {"w.json": {"where": "worker"}})
            assert False
        """
    )
    result = pytester.runpytest_subprocess("-n", "2", timeout=240)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*- sessionstate -*", "*session 'on-a-worker' (1 file)", '*"where": "worker"']
    )
