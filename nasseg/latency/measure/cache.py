"""Measured latencies kept with the study, so that no architecture is measured twice.

One sqlite file (safe for several processes, e.g. Ray trials). A row is keyed by what changes the
number: architecture hash, input size, target, backend, precision and the board's power mode.
Only measurements are cached; estimates are cheap and change with the calibration.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from nasseg.errors import CacheError
from nasseg.latency.result import LatencyResult
from nasseg.models import ArchConfig


@dataclass(frozen=True)
class CacheKey:
    arch_hash: str
    input_hw: tuple[int, int]
    target: str
    backend: str
    precision: str
    power_mode: str = ""  # "" where the device has no power modes (host CPU, desktop GPU)

    @classmethod
    def for_config(
        cls,
        config: ArchConfig,
        input_hw: tuple[int, int],
        target: str,
        backend: str,
        precision: str,
        power_mode: str | None = None,
    ) -> CacheKey:
        return cls(
            config.arch_hash(), (int(input_hw[0]), int(input_hw[1])), target, backend, precision, power_mode or ""
        )

    def columns(self) -> tuple[str, int, int, str, str, str, str]:
        h, w = self.input_hw
        return (self.arch_hash, h, w, self.target, self.backend, self.precision, self.power_mode)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS latency (
    arch_hash TEXT NOT NULL, input_h INTEGER NOT NULL, input_w INTEGER NOT NULL,
    target TEXT NOT NULL, backend TEXT NOT NULL, precision TEXT NOT NULL, power_mode TEXT NOT NULL,
    result TEXT NOT NULL, config TEXT, measured_at REAL NOT NULL,
    PRIMARY KEY (arch_hash, input_h, input_w, target, backend, precision, power_mode)
)
"""
_WHERE = "arch_hash=? AND input_h=? AND input_w=? AND target=? AND backend=? AND precision=? AND power_mode=?"


class LatencyCache:
    FILENAME = "latency_cache.sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(_SCHEMA)

    @classmethod
    def for_study(cls, study_dir: str | Path) -> LatencyCache:
        return cls(Path(study_dir) / cls.FILENAME)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self.path, timeout=30)) as db, db:
                yield db
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"latency cache {self.path} cannot be used: {exc}") from exc

    def get(self, key: CacheKey) -> LatencyResult | None:
        with self._connect() as db:
            row = db.execute(f"SELECT result FROM latency WHERE {_WHERE}", key.columns()).fetchone()
        return LatencyResult.from_dict(json.loads(row[0])) if row else None

    def put(self, key: CacheKey, result: LatencyResult, config: ArchConfig | None = None) -> None:
        if result.kind != "measured":
            raise ValueError("only measurements are cached; estimates are recomputed from the calibration")
        row = (
            *key.columns(),
            json.dumps(result.to_dict()),
            json.dumps(config.to_dict()) if config else None,
            time.time(),
        )
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    def __len__(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]
