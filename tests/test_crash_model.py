"""The pieces under explore: snapshots, the persistence model and the checker."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pytest_sessionstate import Settings, StateManager, probes
from pytest_sessionstate.codec import encode
from pytest_sessionstate.testing.crashcheck import StateChecker, histories
from pytest_sessionstate.testing.crashlog import Recorder
from pytest_sessionstate.testing.powerloss import power_cut_states
from pytest_sessionstate.testing.snapshot import Entry, restore, take_snapshot

OLD = {"v": "old"}
NEW = {"v": "new"}


def recorded(action) -> list[probes.ProbeEvent]:
    recorder = Recorder(None)
    with probes.listen(recorder):
        action()
    return recorder.events


def doc_in(tree, path):
    entry = tree.get(path)
    if entry is None:
        return "absent"
    try:
        return json.loads(entry.data)
    except ValueError:
        return entry.data


# -- snapshots -----------------------------------------------------------------------


def test_restore_brings_back_files_bytes_modes_dirs_and_links(tmp_path):
    root = tmp_path / "root"
    (root / "s1").mkdir(parents=True)
    (root / "s1" / "a.json").write_bytes(b'{"a": 1}')
    os.chmod(root / "s1" / "a.json", 0o640)
    (root / "s1" / "link").symlink_to("a.json")
    os.chmod(root / "s1", 0o750)
    before = take_snapshot(root)

    (root / "s1" / "a.json").write_bytes(b"garbage")
    os.chmod(root / "s1" / "a.json", 0o600)
    (root / "s1" / "link").unlink()
    (root / "s1" / "extra").mkdir()
    (root / "s1" / "extra" / "x").write_text("x")
    (root / "s2").mkdir()
    os.chmod(root / "s1", 0o700)
    restore(root, before)

    assert take_snapshot(root) == before
    assert before["s1/a.json"] == Entry("file", 0o640, b'{"a": 1}')
    assert before["s1/link"] == Entry("link", data=b"a.json")
    assert stat.S_IMODE(os.stat(root / "s1").st_mode) == 0o750


def test_restore_keeps_an_unchanged_file_in_place(tmp_path):
    root = tmp_path / "root"
    (root / "s1").mkdir(parents=True)
    (root / "s1" / ".lock").write_bytes(b"")
    inode = os.stat(root / "s1" / ".lock").st_ino
    before = take_snapshot(root)
    (root / "s1" / "new.json").write_text("{}")

    restore(root, before)

    assert os.stat(root / "s1" / ".lock").st_ino == inode
    assert not (root / "s1" / "new.json").exists()


def test_restore_to_an_empty_tree_empties_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "c").write_text("c")

    restore(root, {})

    assert os.listdir(root) == []


# -- the persistence model -------------------------------------------------------------


def model_run(root: Path, *, durable: bool, existing: bool = True):
    settings = Settings(root, durable=durable)
    manager = StateManager("s1", settings=settings)
    if existing:
        manager.write_json("doc.json", OLD)
    before = take_snapshot(root)
    events = recorded(lambda: manager.write_json("doc.json", NEW))
    return before, events


@pytest.mark.parametrize("durable", [True, False])
def test_every_state_of_a_write_is_old_or_new_or_lost_data(tmp_path, durable):
    before, events = model_run(tmp_path, durable=durable)
    points = [e.point for e in events]

    seen = {}
    for i in range(1, len(events) + 1):
        states = power_cut_states(before, events[:i], tmp_path)
        assert states[0].label == "power cut: every operation reached the disk"
        seen[points[i - 1]] = [doc_in(s.tree, "s1/doc.json") for s in states]

    for point in points[: points.index("replaced")]:
        assert seen[point] == [OLD] * len(seen[point])
    if durable:
        assert seen["replaced"] == [NEW, OLD, OLD]  # the rename may be undone
        assert seen["dir-synced"] == [NEW]
        assert seen["lock-released"] == [NEW]
    else:
        new = encode(NEW)
        lost = [b"", new[: len(new) // 2], bytes(len(new))]
        assert seen["replaced"] == [NEW, *lost, OLD, OLD]
        assert seen["lock-released"] == seen["replaced"]


def test_a_non_durable_new_session_may_vanish(tmp_path):
    before, events = model_run(tmp_path, durable=False, existing=False)

    states = power_cut_states(before, events[:1], tmp_path)  # right after dir-created

    assert events[0].point == "dir-created"
    assert [sorted(s.tree) for s in states] == [["s1", "s1/.lock"], []]
    assert "undone: the creation of session 's1'" in states[1].label


def test_a_durable_new_session_stays(tmp_path):
    before, events = model_run(tmp_path, durable=True, existing=False)

    states = power_cut_states(before, events[:1], tmp_path)

    assert [sorted(s.tree) for s in states] == [["s1", "s1/.lock"]]


def test_an_unlink_may_be_undone_until_the_directory_is_synced(tmp_path):
    manager = StateManager("s1", settings=Settings(tmp_path))
    manager.write_json("doc.json", OLD)
    before = take_snapshot(tmp_path)
    events = recorded(lambda: manager.delete("doc.json"))
    points = [e.point for e in events]

    at_removed = power_cut_states(before, events[: points.index("removed") + 1], tmp_path)
    at_synced = power_cut_states(before, events[: points.index("dir-synced") + 1], tmp_path)

    assert [doc_in(s.tree, "s1/doc.json") for s in at_removed] == ["absent", OLD]
    assert [doc_in(s.tree, "s1/doc.json") for s in at_synced] == ["absent"]


def test_the_states_are_deterministic(tmp_path):
    before, events = model_run(tmp_path, durable=False)

    first = power_cut_states(before, events, tmp_path)
    second = power_cut_states(before, events, tmp_path)

    assert first == second
    assert len({tuple(s.tree.items()) for s in first}) == len(first)  # no duplicates


def test_events_outside_the_root_are_ignored(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _, events = model_run(elsewhere, durable=False)
    root = tmp_path / "root"

    assert [s.tree for s in power_cut_states({}, events, root)] == [{}]


# -- the checker -----------------------------------------------------------------------


def test_histories_follow_versions_and_acknowledgements(tmp_path):
    manager = StateManager("s1", settings=Settings(tmp_path))
    manager.write_json("doc.json", OLD)
    before = take_snapshot(tmp_path)
    events = recorded(lambda: manager.write_json("doc.json", NEW))
    points = [e.point for e in events]

    before_ack = histories(before, events[: points.index("dir-synced") + 1], tmp_path)
    after_ack = histories(before, events, tmp_path)

    key = ("s1", "doc.json")
    assert before_ack[key].versions == [encode(OLD), encode(NEW)]
    assert before_ack[key].acked == 0
    assert after_ack[key].acked == 1


def test_an_acknowledged_write_that_vanished_is_a_violation(tmp_path):
    settings = Settings(tmp_path)
    manager = StateManager("s1", settings=settings)
    manager.write_json("doc.json", OLD)
    before = take_snapshot(tmp_path)
    events = recorded(lambda: manager.write_json("doc.json", NEW))
    restore(tmp_path, before)  # as if the acknowledged write had been lost

    findings, snapshot = StateChecker(settings, before, events, power_cut=True, check=None).run()

    assert snapshot == {"s1": {"doc.json": OLD}}
    (finding,) = findings
    assert (finding.session_id, finding.filename) == ("s1", "doc.json")
    assert finding.found == 'the document {"v": "old"}'
    assert "the acknowledged version" in finding.expected
    assert "must survive" in finding.expected


def test_a_non_durable_write_is_not_promised_to_survive_a_power_cut(tmp_path):
    settings = Settings(tmp_path, durable=False)
    manager = StateManager("s1", settings=settings)
    manager.write_json("doc.json", OLD)
    before = take_snapshot(tmp_path)
    events = recorded(lambda: manager.write_json("doc.json", NEW))
    restore(tmp_path, before)

    power_cut, _ = StateChecker(settings, before, events, power_cut=True, check=None).run()
    killed, _ = StateChecker(settings, before, events, power_cut=False, check=None).run()

    assert power_cut == []
    assert len(killed) == 1  # a kill loses nothing that was acknowledged


def test_a_document_never_written_is_a_violation(tmp_path):
    settings = Settings(tmp_path)
    manager = StateManager("s1", settings=settings)
    manager.write_json("doc.json", OLD)
    before = take_snapshot(tmp_path)
    events = recorded(lambda: manager.update_json("doc.json", {"v": "new"}))
    events = events[: [e.point for e in events].index("replaced") + 1]  # not acknowledged yet
    (tmp_path / "s1" / "doc.json").write_bytes(encode({"v": "invented"}))
    (tmp_path / "s1" / "other.json").write_bytes(b"{")

    findings, snapshot = StateChecker(settings, before, events, power_cut=False, check=None).run()

    assert snapshot == {"s1": {"doc.json": {"v": "invented"}}}
    found = {f.filename: f for f in findings}
    assert found["doc.json"].found == 'the document {"v": "invented"}'
    assert found["doc.json"].expected == (
        'the state before the run ({"v": "old"}) or a version written during the run ({"v": "new"})'
    )
    assert found["other.json"].found.startswith("a file that does not parse (1 bytes b'{'")
    assert found["other.json"].expected == "the state before the run (absent)"


def test_orphaned_temp_files_are_gone_after_the_follow_up_write(tmp_path):
    settings = Settings(tmp_path)
    manager = StateManager("s1", settings=settings)
    manager.write_json("doc.json", OLD)
    orphan = tmp_path / "s1" / ".doc.json.0123456789abcdef.tmp"
    orphan.write_bytes(b"half")
    before = take_snapshot(tmp_path)

    findings, _ = StateChecker(settings, before, [], power_cut=False, check=None).run()

    assert findings == []
    assert not orphan.exists()
