"""Which stages of a recipe run are finished: WORKDIR/recipe-state.json.

A stage is finished when the record under its name holds the same key (a hash of everything that
decides its result: teacher weights, target profile, data, settings) and the files it made are still
there. A rerun of a recipe reuses such stages as they are and runs the others; a stage that stopped
half-way resumes by its own means (the trainer's checkpoints, the selection's study and students).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edgekd._io import file_sha256, write_json

STATE_NAME = "recipe-state.json"


def stage_key(*parts: Any) -> str:
    """A short stable hash of a stage's inputs (JSON-able values, Paths as text)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_key(spec: str) -> str:
    """The data as a key part: its name, or a file's path and content hash, or a folder's path."""
    path = Path(spec)
    if spec == "fashion-mnist":
        return spec
    if path.is_file():
        return f"{path.resolve()}#{file_sha256(path)}"
    return str(path.resolve()) if path.exists() else spec


class StageLog:
    """The finished stages of one workdir, read at start and written after every stage."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / STATE_NAME
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self.records = dict(json.loads(self.path.read_text()))
            except (OSError, ValueError):
                self.records = {}  # unreadable: every stage counts as not done
        self.events: list[dict[str, str]] = []

    def finished(self, stage: str, key: str, *files: Path) -> dict[str, Any] | None:
        """The result of `stage` if it finished with this key and its files are still there."""
        record = self.records.get(stage)
        if record is None or record.get("key") != key or not all(Path(f).exists() for f in files):
            return None
        result: dict[str, Any] = record["result"]
        return result

    def reuse(self, stage: str, key: str, *files: Path) -> dict[str, Any] | None:
        """`finished`, noting the stage as reused when it is."""
        result = self.finished(stage, key, *files)
        if result is not None:
            self.events.append({"stage": stage, "status": "reused"})
        return result

    def record(self, stage: str, key: str, result: dict[str, Any]) -> None:
        """Mark `stage` finished with `result` (written at once: a later stage may fail)."""
        self.records[stage] = {"key": key, "result": result}
        self.events.append({"stage": stage, "status": "ran"})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, self.records)
