"""The results store: one SQLite file per workspace.

Every record is written in its own transaction, so a crash loses at most the record being written.
WAL mode plus a busy timeout lets several edgekd processes write to one store at once without losing
anything: SQLite serialises the writers, and each waits its turn instead of failing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from edgekd.errors import UserError

STORE_NAME = "edgekd.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    config TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    epoch INTEGER,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    runtime TEXT NOT NULL,
    precision TEXT NOT NULL,
    target TEXT,
    info TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS benchmarks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    artifact TEXT NOT NULL,
    runtime TEXT NOT NULL,
    precision TEXT NOT NULL,
    batch INTEGER NOT NULL,
    p50_ms REAL NOT NULL,
    mean_ms REAL NOT NULL,
    accuracy REAL,
    result TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id);
"""


def default_store(folder: Path) -> Path:
    """The store of the workspace `folder`, unless EDGEKD_STORE names another file."""
    env = os.environ.get("EDGEKD_STORE")
    return Path(env) if env else folder / STORE_NAME


class Store:
    """Append-only records of what each stage did. Cheap to open; opens a connection per operation."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise UserError(f"store folder does not exist: {self.path.parent}; create it first")
        with self.connect() as conn:
            conn.executescript(_SCHEMA)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection with the store's settings (WAL, busy timeout): for modules that keep tables of
        their own in the same file."""
        with closing(sqlite3.connect(self.path, timeout=60.0, isolation_level=None)) as conn:
            conn.execute("PRAGMA busy_timeout = 60000")
            _use_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.row_factory = sqlite3.Row
            yield conn

    def _insert(self, sql: str, args: tuple[Any, ...]) -> int:
        with self.connect() as conn:
            # BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue instead of
            # failing with "database is locked" halfway through a transaction.
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(sql, args)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return int(cur.lastrowid or 0)

    def start_run(self, kind: str, name: str, config: dict[str, Any]) -> int:
        return self._insert(
            "INSERT INTO runs(kind, name, config, created) VALUES (?, ?, ?, ?)",
            (kind, name, json.dumps(config, sort_keys=True, default=str), time.time()),
        )

    def log_metric(self, run_id: int, name: str, value: float, epoch: int | None = None) -> None:
        """One metric; an epoch's metric is written once (a run resumed after a kill that fell between
        logging an epoch and saving its checkpoint trains that epoch again, and logs it again)."""
        if epoch is None:
            self._insert(
                "INSERT INTO metrics(run_id, epoch, name, value, created) VALUES (?, ?, ?, ?, ?)",
                (run_id, epoch, name, float(value), time.time()),
            )
            return
        self._insert(
            "INSERT INTO metrics(run_id, epoch, name, value, created) SELECT ?, ?, ?, ?, ? WHERE NOT EXISTS"
            " (SELECT 1 FROM metrics WHERE run_id = ? AND epoch = ? AND name = ?)",
            (run_id, epoch, name, float(value), time.time(), run_id, epoch, name),
        )

    def log_artifact(self, path: Path, info: dict[str, Any]) -> int:
        return self._insert(
            "INSERT INTO artifacts(path, runtime, precision, target, info, created) VALUES (?, ?, ?, ?, ?, ?)",
            (
                str(path),
                str(info.get("runtime", "")),
                str(info.get("precision", "")),
                info.get("target"),
                json.dumps(info, sort_keys=True, default=str),
                time.time(),
            ),
        )

    def log_benchmark(self, artifact: str, result: dict[str, Any]) -> int:
        fp = result.get("fingerprint", {})
        return self._insert(
            "INSERT INTO benchmarks(artifact, runtime, precision, batch, p50_ms, mean_ms, accuracy, result,"
            " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                artifact,
                str(fp.get("runtime", "")),
                str(fp.get("precision", "")),
                int(result["batch"]),
                float(result["latency_ms"]["p50"]),
                float(result["latency_ms"]["mean"]),
                result.get("accuracy"),
                json.dumps(result, sort_keys=True, default=str),
                time.time(),
            ),
        )

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.connect() as conn:
            return [dict(row) for row in conn.execute(sql, args).fetchall()]

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        if kind is None:
            return self.query("SELECT * FROM runs ORDER BY id")
        return self.query("SELECT * FROM runs WHERE kind = ? ORDER BY id", (kind,))

    def metrics(self, run_id: int) -> list[dict[str, Any]]:
        return self.query("SELECT epoch, name, value FROM metrics WHERE run_id = ? ORDER BY id", (run_id,))

    def benchmarks(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM benchmarks ORDER BY id")
        for row in rows:
            row["result"] = json.loads(row["result"])
        return rows


def _use_wal(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """Switch the file to WAL unless it is already. The switch needs the file to itself and SQLite does
    not wait for that (busy_timeout does not apply), so processes opening a new file at once (an Optuna
    study's workers) retry instead of failing with "database is locked"."""
    for attempt in range(attempts):
        try:
            if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
