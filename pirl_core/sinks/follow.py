"""New complete records of other processes' telemetry files, read from where they ended.

Why: one W&B run per training run (LeRobot's asynchronous-RL convention) belongs to the learner,
yet the actors' per-version metrics must reach it. The actors already write every record to
``telemetry/actor-N.jsonl``; the learner's W&B sink reads those same records (never a second
computation of them). Files are read from their size when following starts, so a resumed run
does not log an earlier segment's records twice. A partially written last line waits.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonlFollower:
    def __init__(self, directory: Path, exclude: str) -> None:
        self.directory = Path(directory)
        self.exclude = exclude
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}
        for path in self._files():
            self._offsets[path] = path.stat().st_size

    def _files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in sorted(self.directory.glob("*.jsonl")) if p.stem != self.exclude]

    def poll(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for path in self._files():
            offset = self._offsets.get(path, 0)
            size = path.stat().st_size
            if size <= offset:
                continue
            with path.open("rb") as fh:
                fh.seek(offset)
                data = self._partial.pop(path, b"") + fh.read(size - offset)
            self._offsets[path] = size
            lines = data.split(b"\n")
            if lines[-1]:
                self._partial[path] = lines[-1]
            for line in lines[:-1]:
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(record, dict):
                    record.setdefault("source", path.stem)
                    records.append(record)
        return records
