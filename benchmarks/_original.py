"""The original ``StateManager`` (shared/seed/), its protocol kept line for line.

The benchmarks' yardstick, in one place: the lock is a file made with
``touch(exist_ok=False)``, polled every 0.1 s and unlinked on release; a write
is ``json.dump(indent=2, default=str)`` to a fixed temp name and a rename, with
no fsync.  Only what the seed imported from its app is replaced: the session
directory and the lock timeout are arguments here, and the errors are
``TimeoutError`` / ``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class OriginalStateManager:
    """The seed's ``StateManager`` for one session directory."""

    def __init__(self, session_dir: Path, *, lock_timeout: float = 30.0) -> None:
        self.session_dir = session_dir
        self.lock_file = session_dir / ".lock"
        self.lock_timeout = lock_timeout

    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        self.session_dir.mkdir(parents=True, exist_ok=True)
        timeout = timeout or self.lock_timeout  # the seed's: 0 means the default
        start_time = time.time()
        while True:
            try:
                self.lock_file.touch(exist_ok=False)
                break
            except FileExistsError:
                if time.time() - start_time > timeout:
                    raise TimeoutError(f"original lock: no lock within {timeout}s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                if self.lock_file.exists():
                    self.lock_file.unlink()

    def read_json(self, filename: str) -> dict[str, Any]:
        file_path = self.session_dir / filename
        if not file_path.exists():
            raise FileNotFoundError(file_path)
        with open(file_path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
        return data

    def write_json_unlocked(self, filename: str, data: dict[str, Any]) -> None:
        self.session_dir.mkdir(parents=True, exist_ok=True)
        file_path = self.session_dir / filename
        temp_path = self.session_dir / f".{filename}.tmp"
        with open(temp_path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=str)
        temp_path.replace(file_path)

    def update_json(self, filename: str, updates: dict[str, Any]) -> dict[str, Any]:
        with self.lock():
            data = self.read_json(filename)
            for key, value in updates.items():
                if "." in key:
                    parts = key.split(".")
                    target = data
                    for part in parts[:-1]:
                        if part not in target:
                            target[part] = {}
                        target = target[part]
                    target[parts[-1]] = value
                else:
                    data[key] = value
            self.write_json_unlocked(filename, data)
        return data

    def increment(self, filename: str, key: str) -> None:
        """A read-modify-write of one counter under the lock, the way callers of the
        seed wrote one (its ``update_json`` cannot add to a value)."""
        with self.lock():
            data = self.read_json(filename)
            data[key] += 1
            self.write_json_unlocked(filename, data)
