"""`make faults`: the fault suite on both databases, and RELIABILITY.md from what it measured.

    .venv/bin/python tests/faults/run.py [--only sqlite|scaled] [--out FILE] [-- PYTEST ARGS]

1. The embedded default (SQLite, ORM broker, in-memory channel layer): tests/faults and
   tests/security, without the tests marked `scaled`.
2. Scaled mode: tests/faults with the `scaled` ones (two daphne processes, two worker
   clusters) and tests/security on PostgreSQL + Redis, from DATABASE_URL/REDIS_URL when they
   are set, otherwise on throwaway servers `.ci/scaled-services` starts (it installs Debian's
   packages when missing; root). tests/security runs in both passes so that T8 reports both
   databases: revocation across processes goes through the Redis channel layer there.

Each pass writes its figures to var/faults/figures-<pass>.json (tests/figures.py) and its
pytest outcome to var/faults/<pass>.log; RELIABILITY.md is rendered from those files
(tests/faults/report.py) even when a pass failed, and says so. Exit status: non-zero when
a pass failed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults import report  # noqa: E402

VAR = ROOT / "var" / "faults"
# --durations: the log says where the minutes went when the suite nears its 15-minute bound
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--durations=15"]
SCALED = ROOT / ".ci" / "scaled-services"


def run_pass(name: str, env: dict, marks: str, suites: list[str], extra: list[str]) -> dict:
    figures = VAR / f"figures-{name}.json"
    figures.unlink(missing_ok=True)
    log = VAR / f"{name}.log"
    env = {
        **env,
        "LLMOPS_FAULTS_FIGURES": str(figures),
        "LLMOPS_DATA_DIR": str(ROOT / "var" / f"faults-{name}"),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    print(f"== fault suite: {name}", flush=True)
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*PYTEST, "-m", marks, *extra, *([] if _names_tests(extra) else suites)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for line in proc.stdout:  # to the console and the log alike
            sys.stdout.write(line)
            out.write(line)
        proc.wait()
    summary = [line for line in log.read_text().splitlines() if re.match(r"=+ .* in [\d.]+s", line)]
    return {
        "name": name,
        "returncode": proc.returncode,
        "seconds": round(time.monotonic() - started),
        "summary": summary[-1].strip("= ") if summary else "no pytest summary (see the log)",
        "figures": figures,
    }


def _names_tests(args: list[str]) -> bool:
    """Whether the pytest arguments name their own tests (else the two suites run)."""
    return any(not a.startswith("-") and a.startswith("tests") for a in args)


def scaled_environment() -> tuple[dict, str | None]:
    """DATABASE_URL/REDIS_URL from the caller, or throwaway servers (and their directory)."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return dict(os.environ), None
    out = subprocess.run([str(SCALED)], capture_output=True, text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in out.split())
    return {**os.environ, **values}, values["SCALED_DIR"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["sqlite", "scaled"])
    parser.add_argument("--out", default=str(ROOT / "RELIABILITY.md"))
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    VAR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    passes = []
    if args.only in (None, "sqlite"):
        base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        passes.append(
            run_pass("sqlite", base, "not scaled", ["tests/faults", "tests/security"], extra)
        )
    if args.only in (None, "scaled"):
        env, scaled_dir = scaled_environment()
        try:
            passes.append(run_pass("scaled", env, "", ["tests/faults", "tests/security"], extra))
        finally:
            if scaled_dir:
                subprocess.run([str(SCALED), "stop", scaled_dir], check=False)
    minutes = (time.monotonic() - started) / 60
    Path(args.out).write_text(report.render(passes, minutes))
    print(f"wrote {args.out} ({minutes:.1f} min)")
    for p in passes:
        print(f"  {p['name']}: {p['summary']}")
    return 0 if all(p["returncode"] == 0 for p in passes) else 1


if __name__ == "__main__":
    sys.exit(main())
