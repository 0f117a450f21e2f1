"""`make bench`: run every benchmark module and write BENCHMARKS.md from what they measured.

    .venv/bin/python bench/run.py [--quick] [--only M1,M3] [--out BENCHMARKS.md]

Each module in MODULES whose file exists in bench/ runs as a subprocess (in a process group of
its own, with a timeout), `.venv/bin/python bench/<name>.py [--quick] --json OUT`, and hands
back its section as JSON (the contract is in bench/common.py; a copy of each is kept in
var/bench/results/, the module's output in var/bench/logs/). A module that fails or times out
becomes a section that says so and why; the others still run. Anything a module leaves running
is killed and reported. Sections follow MODULES' order (M1, M2, ... then the simulator).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402


@dataclass(frozen=True)
class Module:
    name: str  # bench/<name>.py
    id: str
    title: str  # used only when the module fails before it can name itself
    args: list[str] = field(default_factory=list)  # for the full run (not with --quick)
    timeout_s: int = 600


MODULES = [
    Module("latency", "M1", "Added latency at concurrency 1", timeout_s=900),
    Module("throughput", "M2", "Throughput at 16 concurrent clients"),
    Module("streaming", "M3", "Streaming"),
    # 50,000 requests, measured (the size the targets are stated for; about 2.5 min)
    Module("batch_pipeline", "M4", "Batch pipeline"),
    Module("ledger_writes", "M5", "Ledger write rate"),
    # as many requests as a minute allows; the section labels its growth per 100,000 as
    # extrapolated and names the command that measures 100,000 (about half an hour)
    # Exactly 100,000 requests, the number the target is stated over (about 11 to 18 min).
    Module("memory_growth", "M6", "Memory growth", args=["--requests", "100000"], timeout_s=1800),
    Module("savings_replay", "M8", "Savings replay"),
    Module("sim_throughput", "SIM", "The provider simulator", timeout_s=120),
    # Last: the profile the other sections' "what stands in the way" points to.
    Module("profile", "PROF", "Where daphne's CPU goes", args=["--seconds", "15"], timeout_s=300),
]
LOG_DIR = common.VAR / "logs"


def our_group_alive(pgid: int) -> list[str]:
    """Processes still in the process group `pgid` (the module's own, nobody else's)."""
    left = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) == pgid:
                argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                left.append(f"{proc.name}: {argv.strip()[:120]}")
        except (OSError, ValueError, IndexError):
            continue
    return left


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
        time.sleep(2)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_module(module: Module, quick: bool) -> dict:
    """The module's result (its JSON), or a failure section; plus how long it took."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{module.name}.log"
    with tempfile.TemporaryDirectory(prefix="llmops-bench-run-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, f"bench/{module.name}.py"]
        argv += ["--quick"] if quick else module.args
        argv += ["--json", str(out)]
        print(f"== {module.id} {module.name}: {' '.join(argv[1:-2])}", flush=True)
        started, busy, ours = time.monotonic(), machine_busy_s(), ours_s()
        failure = None
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # noqa: S603
                argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = proc.wait(timeout=module.timeout_s)
                if code != 0:
                    failure = f"it exited with status {code}"
            except subprocess.TimeoutExpired:
                failure = f"it did not finish within its {module.timeout_s} s timeout"
                kill_group(proc.pid)
                proc.wait()
        seconds = time.monotonic() - started
        others = (machine_busy_s() - busy) - (ours_s() - ours)
        left = our_group_alive(proc.pid)
        if left:
            kill_group(proc.pid)
        result = None
        if failure is None:
            try:
                result = json.loads(out.read_text())
                (LOG_DIR.parent / "results").mkdir(exist_ok=True)
                (LOG_DIR.parent / "results" / f"{module.name}.json").write_text(out.read_text())
                missing = {"id", "title", "command", "figures", "markdown"} - set(result)
                if missing:
                    failure = f"its JSON lacks {', '.join(sorted(missing))}"
                    result = None
            except (OSError, ValueError) as exc:
                failure = f"it wrote no readable JSON ({exc})"
    if result is None:
        tail = [
            line
            for line in log_path.read_text(errors="replace").splitlines()
            if line.strip() and not line.startswith("WARNING: Location")
        ][-12:]
        result = {
            "id": module.id,
            "title": module.title,
            "command": f".venv/bin/python bench/{module.name}.py",
            "figures": {},
            "markdown": (
                f"**This module failed in this run**: {failure}. Its last output "
                f"(`var/bench/logs/{module.name}.log`):\n\n```\n"
                + ("\n".join(tail) or "(no output)")
                + "\n```"
            ),
            "failed": failure,
        }
    result["seconds"] = round(seconds, 1)
    # CPU that processes this run did not start took while the module ran: a busy machine
    # (another test run, a build) makes every figure of the module worse
    result["others_cpu_share"] = round(max(0.0, others) / seconds, 2)
    if left:
        result["markdown"] += (
            f"\n\nIt left {len(left)} process(es) running, killed by bench/run.py: "
            + "; ".join(f"`{p}`" for p in left)
        )
    status = "FAILED: " + result["failed"] if result.get("failed") else "ok"
    print(f"   {status} in {seconds:.0f} s (log: var/bench/logs/{module.name}.log)", flush=True)
    return result


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def ours_s() -> float:
    """CPU seconds used by the modules this process ran, and everything they waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def render(results: list[dict], skipped: list[Module], info: dict) -> str:
    m = info["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`bench/run.py`) on {info['date']}"
        + (" with `--quick` (short runs, for development)" if info["quick"] else "")
        + f"; it took {info['seconds'] / 60:.1f} min. Every figure below comes from that run. "
        "Run it again after a change that could move a figure, and commit the file it writes; "
        "each section names the command that runs its module alone.",
        "",
        "Figures are medians with their spread (min to max) over interleaved rounds unless a "
        "section says otherwise. **Client, simulator, llmops and LiteLLM share the same "
        f"{m['cores']} cores**, so every latency and rate here is an upper bound of a server's "
        "own cost (latency) or a lower bound of its capacity (rate); each section says which "
        "process used how much CPU where it measured it.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu']}, {m['cores']} cores ({m['arch']}) |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| OS | {m['os']} |",
        f"| load average (1, 5, 15 min) | {info['load_before']} before the run, "
        f"{info['load_after']} after |",
        f"| speed gauge: a fixed piece of Python (JSON, SHA-256, SQLite in memory); lower is "
        f"faster, and absolute figures compare between runs only at like gauges and like SIM "
        f"figures (pure Python, the gauge understates a slowdown of socket-bound work) "
        f"(`bench/common.py` `speed_gauge`) | {info['gauge_before']} ms before the run, "
        f"{info['gauge_after']} ms after |",
        f"| command | `make bench`, i.e. `.venv/bin/python bench/run.py"
        f"{' --quick' if info['quick'] else ''}` |",
    ]
    lines += [f"| {name} | {version} |" for name, version in info["versions"].items()]
    lines += [
        "",
        "*Others' CPU*: CPU time that processes outside this run (another test run, a build) "
        "used while the module ran, in cores; anything above a few hundredths took CPU from "
        "the module's client and servers and makes its figures worse than the code's own.",
        "",
        "| section | module | took | others' CPU | speed gauge before it | status |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        status = "failed" if r.get("failed") else "ok"
        anchor = f"{r['id']}: {r['title']}"
        lines.append(
            f"| {anchor} | `{r['command']}` | {r['seconds']:.0f} s | "
            f"{r['others_cpu_share']:.2f} | {r['gauge_ms']} ms | {status} |"
        )
    for module in skipped:
        lines.append(
            f"| {module.id}: {module.title} | `bench/{module.name}.py` | — | — | — | skipped |"
        )
    for r in results:
        lines += [
            "",
            f"## {r['id']}: {r['title']}",
            "",
            r["markdown"].rstrip(),
        ]
    if skipped:
        lines += ["", "## Not run", ""]
        lines += [
            f"- {module.id} ({module.title}): `bench/{module.name}.py` does not exist yet."
            for module in skipped
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every module's short run")
    parser.add_argument("--only", help="comma-separated ids, e.g. M1,M3")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    only = {part.strip().upper() for part in args.only.split(",")} if args.only else None
    chosen = [m for m in MODULES if only is None or m.id in only]
    present = [m for m in chosen if (ROOT / "bench" / f"{m.name}.py").exists()]
    skipped = [m for m in chosen if m not in present]
    for module in skipped:
        print(f"== {module.id} {module.name}: bench/{module.name}.py does not exist, skipped")
    info = {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "quick": args.quick,
        "machine": common.machine(),
        "load_before": loadavg(),
        "gauge_before": common.speed_gauge(),
    }
    started = time.monotonic()
    results = []
    for module in present:
        gauge = common.speed_gauge()
        results.append({**run_module(module, args.quick), "gauge_ms": gauge})
    info["seconds"] = time.monotonic() - started
    info["load_after"] = loadavg()
    info["gauge_after"] = common.speed_gauge()
    info["versions"] = common.versions()
    Path(args.out).write_text(render(results, skipped, info))
    failed = [r["id"] for r in results if r.get("failed")]
    print(
        f"wrote {args.out} in {info['seconds'] / 60:.1f} min"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
