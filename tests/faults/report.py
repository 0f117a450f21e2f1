"""RELIABILITY.md from the figures `make faults` recorded (tests/figures.py, tests/faults/run.py).

Every number in the file comes from the JSON the tests wrote in that run; nothing here is
measured or typed in by hand. A test listed below that recorded nothing in a pass says so.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

# (id, title, what must hold, the test that measures it)
TESTS = [
    (
        "MP",
        "Two daphne processes and two worker clusters (PostgreSQL + Redis)",
        "websocket notifications cross processes; every batch completes once; no duplicate work",
        "tests/faults/test_multiprocess.py",
    ),
    (
        "T1",
        "Concurrent requests against a budget that fits 50",
        "overspend 0, on one and on two daphne processes",
        "tests/faults/test_budget_race.py",
    ),
    (
        "T2",
        "A worker SIGKILLed at each lifecycle step and at random moments",
        "≥ 100 lifecycles; 0 lost results, 0 duplicate ledger entries, 1 provider batch per job, "
        "0 orphans after the reconciler",
        "tests/faults/test_worker_kills.py",
    ),
    (
        "T3",
        "The ledger reconciled against the simulator's bill (`/_sim/usage`)",
        "drift 0",
        "tests/faults/test_reconcile.py",
    ),
    (
        "T4",
        "Streams cut by the client, cut by the upstream, or stalled",
        "≥ 500 streams; usage recorded for 100%; open holds 0",
        "tests/faults/test_streams.py",
    ),
    (
        "T6",
        "The API fuzzed from its OpenAPI schema (schemathesis) and JSONL batch files (hypothesis)",
        "0 server errors, on both databases",
        "tests/faults/test_fuzz.py",
    ),
    (
        "T7",
        "Provider outages at 1-50% error rates",
        "fallback success rate reported; billed (simulator) vs ledger difference 0",
        "tests/faults/test_outages.py",
    ),
    (
        "T8",
        "A hostile tenant: cross-tenant sweep, websockets (origins, revoked credentials, "
        "floods, caps, resync cost), hostile bodies and limits, idempotency, the cache key, "
        "outbound URLs, login throttling, `check --deploy`",
        "0 leaks; a foreign origin (scheme, host or port) or no auth refused; a revoked key or "
        "ended session closes its sockets within seconds with 0 messages after the revocation; "
        "a flood gets an error then a close, memory bounded; NaN/Infinity and over-limit "
        "input a 4xx naming the field, 0 server errors; a 402 replays as 402; no redirect "
        "followed and no private target without the operator's switch; password guessing "
        "locked out; 0 warnings in production mode",
        "tests/security/",
    ),
]
# Why a test records nothing in a pass by design (tests/faults/run.py)
NOT_IN_PASS = {
    ("MP", "sqlite"): "it needs PostgreSQL + Redis",
}
PASS_TITLES = {
    "sqlite": "embedded default (SQLite)",
    "scaled": "scaled mode (PostgreSQL + Redis)",
}


def _cell(value) -> str:
    if isinstance(value, bool):  # plain: whether yes or no is the good answer is the column's
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False).replace("|", "\\|")
    return str(value).replace("|", "\\|")


def _tables(rows: dict[str, dict]) -> list[str]:
    """One table per set of columns: a test's cases that measure different things (the
    sweep and the websocket handshakes of T8) do not share one mostly empty table."""
    groups: dict[tuple[str, ...], dict[str, dict]] = {}
    for case, values in rows.items():
        groups.setdefault(tuple(values), {})[case] = values
    lines: list[str] = []
    for columns, cases in groups.items():
        lines += [
            "| case | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
            "|---" * (len(columns) + 1) + "|",
        ]
        for case, values in cases.items():
            lines.append(f"| {case} | " + " | ".join(_cell(values[c]) for c in columns) + " |")
        lines.append("")
    return lines


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def render(passes: list[dict], minutes: float) -> str:
    figures = {}
    for p in passes:
        path = Path(p["figures"])
        figures[p["name"]] = json.loads(path.read_text()) if path.exists() else {}
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Reliability figures",
        "",
        f"Written by `make faults` (`tests/faults/run.py`) on {when}, commit {_commit()}, "
        f"in {minutes:.1f} min. Every figure below was recorded by the test named under it, "
        "in that run; the invariants it checks are in the test and in "
        "[README.md](README.md#reliability-the-fault-suite).",
        "",
        "| pass | pytest | minutes |",
        "|---|---|---|",
    ]
    for p in passes:
        verdict = "passed" if p["returncode"] == 0 else "**FAILED**"
        out.append(
            f"| {PASS_TITLES.get(p['name'], p['name'])} | {verdict}: {p['summary']} | "
            f"{p['seconds'] / 60:.1f} |"
        )
    for test_id, title, target, source in TESTS:
        out += ["", f"## {test_id}: {title}", ""]
        out += [f"Must hold: {target}. Measured by `{source}`.", ""]
        for p in passes:
            rows = figures[p["name"]].get(test_id)
            label = PASS_TITLES.get(p["name"], p["name"])
            if not rows:
                why = NOT_IN_PASS.get((test_id, p["name"]), "it recorded nothing: see the log")
                out += [f"*{label}*: not run in this pass ({why}).", ""]
                continue
            out += [f"*{label}*", "", *_tables(rows)]
    return "\n".join(out).rstrip() + "\n"
