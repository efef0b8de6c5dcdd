"""Placeholder until the core suite lands."""

from pytest_sessionstate import Settings, StateManager


def test_round_trip(tmp_path):
    manager = StateManager("s", settings=Settings(tmp_path))
    manager.write_json("a.json", {"x": 1})
    assert manager.read_json("a.json") == {"x": 1}
