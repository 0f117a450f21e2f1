"""Figures a test measured, for RELIABILITY.md: `make faults` (tests/faults/run.py) points
LLMOPS_FAULTS_FIGURES at a JSON file per database and renders the report from them. Under
`make test` the variable is unset and recording does nothing, so a test can record and assert
alike in both runs.

    def test_overspend(figures):
        figures.record("T1", "one daphne", requests=500, admitted=50, overspend_usd="0")
        assert ...
"""

from __future__ import annotations

import fcntl
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any


class Figures:
    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None

    def record(self, test: str, case: str, **values: Any) -> None:
        """Merge `values` into the `case` row of `test` (T1, T2, ...). Recorded before the
        test's assertions, so a failing run still shows what it measured."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Appends under an exclusive lock: tests may run in several processes.
        with self.path.open("a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            data = json.loads(handle.read() or "{}")
            row = data.setdefault(test, {}).setdefault(case, {})
            row.update({k: _plain(v) for k, v in values.items()})
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(data, indent=1))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):  # money stays exact, as text without the exponent
        return format(value.normalize(), "f")
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def from_environment() -> Figures:
    return Figures(os.environ.get("LLMOPS_FAULTS_FIGURES"))
