"""What every benchmark module shares: statistics over interleaved rounds, the machine and the
versions, a simulator and a seeded llmops stack in their own processes, and the JSON result.

The harness contract (bench/run.py reads it): a module is a script `bench/<name>.py`, run as
`.venv/bin/python bench/<name>.py [--quick] --json OUT`, that writes OUT as JSON

    {"id": "M1", "title": "...", "command": "<how to run it alone>",
     "figures": {...}, "markdown": "<the section body: tables, the target, met or by how much>"}

A script imports this module after putting the repository root on sys.path:

    ROOT = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(ROOT))
    from bench import common  # noqa: E402
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests` and the Django apps import from the repository root
    sys.path.insert(0, str(ROOT))

from llmops.simulator.state import INSTANT_CONFIG  # noqa: E402
from llmops.simulator.testing import SimulatorHandle  # noqa: E402

VAR = ROOT / "var" / "bench"  # caches kept between runs (the LiteLLM virtual environment)
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
os.environ.setdefault("no_proxy", "127.0.0.1,localhost")


# --- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float], digits: int = 2) -> dict[str, float]:
    """n, p50, p90, p99, min, max of one sample (e.g. per-request latencies in ms)."""
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "min": round(min(values), digits) if values else math.nan,
        "max": round(max(values), digits) if values else math.nan,
    }


def spread(per_round: Sequence[float], digits: int = 2) -> dict[str, float]:
    """A figure measured once per interleaved round: its median and its spread (min, max)."""
    return {
        "median": round(statistics.median(per_round), digits),
        "min": round(min(per_round), digits),
        "max": round(max(per_round), digits),
        "rounds": len(per_round),
    }


def fmt_spread(s: dict[str, float], unit: str = " ms", digits: int = 1) -> str:
    """'2.3 ms (2.1 to 2.6)': a median over rounds with its range."""
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f} to {s['max']:.{digits}f})"


def added_cells(row: dict) -> str:
    """An arm's "added p50 (median over rounds, range) | added p99" table cells (M1, M3)."""
    if "added_p50_ms" not in row:
        return "— | —"
    return f"**{fmt_spread(row['added_p50_ms'], digits=2)}** | **{row['added_p99_ms']:.2f} ms**"


def verdict(value: float, target: float, *, at_most: bool = True, unit: str = " ms") -> str:
    """'met (≤ 3 ms)' or '**missed** by 4.2 ms (target ≤ 3 ms)'."""
    sign = "≤" if at_most else "≥"
    ok = value <= target if at_most else value >= target
    if ok:
        return f"met ({sign} {target:g}{unit})"
    by = value - target if at_most else target - value
    return f"**missed** by {by:.1f}{unit} (target {sign} {target:g}{unit})"


# --- the machine and the versions -------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    os_name = platform.platform()
    try:
        fields = dict(
            line.split("=", 1)
            for line in Path("/etc/os-release").read_text().splitlines()
            if "=" in line
        )
        os_name = f"{fields.get('PRETTY_NAME', '').strip(chr(34))}, Linux {platform.release()}"
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": ram_gib,
        "os": os_name,
        "arch": platform.machine(),
    }


def speed_gauge(repeats: int = 7) -> float:
    """Milliseconds this machine takes for a fixed piece of Python (JSON, hashing, an in-memory
    SQLite table: what a request's CPU is made of), the median of `repeats`. The same code has
    run 1.8 times slower here from one hour to the next with nothing else running, so absolute
    figures compare between runs only at like gauges; ratios within a run always do. Socket-bound
    work (every served request) has slowed more than this gauge shows: the simulator's CPU per
    request (SIM) is the yardstick for it."""
    row = {"id": 1, "messages": [{"role": "user", "content": "x" * 200}], "max_tokens": 8}

    def once() -> float:
        started = time.perf_counter()
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT, digest TEXT)")
        for i in range(5000):
            body = json.dumps({**row, "id": i})
            digest = hashlib.sha256(body.encode()).hexdigest()
            db.execute("INSERT INTO t VALUES (?, ?, ?)", (i, body, digest))
        total = sum(json.loads(body)["id"] for (body,) in db.execute("SELECT body FROM t"))
        db.close()
        assert total == 4999 * 5000 // 2
        return (time.perf_counter() - started) * 1000

    return round(statistics.median(once() for _ in range(repeats)), 1)


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def versions() -> dict[str, str]:
    from bench import litellm_proxy  # the proxy lives in a virtual environment of its own

    return {
        "Python": platform.python_version(),
        "Django": package_version("django"),
        "daphne": package_version("daphne"),
        "channels": package_version("channels"),
        "openai": package_version("openai"),
        "aiohttp": package_version("aiohttp"),
        "litellm": litellm_proxy.installed_version() or "not installed",
        "SQLite": sqlite3.sqlite_version,
    }


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 30, proc: subprocess.Popen | None = None) -> None:
    """Until `url` answers at all (any HTTP status), or raise."""
    deadline = time.monotonic() + timeout_s
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            with opener.open(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{url}: its process exited ({proc.returncode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout_s:g} s") from None
            time.sleep(0.1)


def stop(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    """Terminate a process this module started, then kill it if it does not go."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SIMULATOR_SERVER = (
    "import json, sys; from llmops.simulator.server import run; "
    "run('127.0.0.1', int(sys.argv[1]), json.loads(sys.argv[2]))"
)


@contextmanager
def simulator_process(**config: Any) -> Iterator[tuple[SimulatorHandle, subprocess.Popen]]:
    """The provider simulator in a process of its own (not a thread of the measuring client,
    whose GIL it would share), instant timings unless `config` says otherwise."""
    port = free_port()
    settings = {**INSTANT_CONFIG, **config}
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", SIMULATOR_SERVER, str(port), json.dumps(settings)], cwd=ROOT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/_sim/health", 20, proc)
        yield SimulatorHandle(base), proc
    finally:
        stop(proc)


def production_env() -> dict[str, str]:
    """llmops settings as a deployment runs them (no debug query log, no debug pages), with
    the per-key rate limit out of a benchmark's way."""
    return {
        "LLMOPS_DEBUG": "false",
        "LLMOPS_SECRET_KEY": secrets.token_urlsafe(48),
        "LLMOPS_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "LLMOPS_SECURE_SSL_REDIRECT": "false",
        "LLMOPS_API_RATE": "100000000/minute",
        "LLMOPS_LOG_LEVEL": "warning",
        # The simulator runs on this machine: production refuses loopback targets otherwise.
        "LLMOPS_OUTBOUND_ALLOW_PRIVATE": "127.0.0.1",
    }


# What `make run` changes from production_env: DEBUG on, INFO logs (the per-key rate limit stays
# out of a benchmark's way).
MAKE_RUN_ENV = {"LLMOPS_DEBUG": "true", "LLMOPS_LOG_LEVEL": "info"}


@contextmanager
def llmops_stack(simulator_url: str, prefix: str = "llmops-bench-", **settings: str):
    """A migrated, seeded llmops (daphne, SQLite in a throwaway data directory, production
    settings) on a free port against `simulator_url`; yields (stack, daphne pid). The stack's
    API key is acme's admin key (tests.live.stack.API_KEY)."""
    from tests.live.stack import running_llmops

    with (
        tempfile.TemporaryDirectory(prefix=prefix) as data_dir,
        running_llmops(simulator_url, Path(data_dir), **{**production_env(), **settings}) as stack,
    ):
        yield stack, daphne_pid(int(stack.base_url.rsplit(":", 1)[1]))


def daphne_pid(port: int) -> int:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daphne" in b" ".join(argv) and str(port).encode() in argv:
            return int(proc.name)
    raise RuntimeError(f"no daphne process listens on port {port}")


# --- the result -----------------------------------------------------------------------------


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options every module takes: --quick (a short run, for development) and --json."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, for development")
    parser.add_argument("--json", metavar="OUT", help="write the result here as JSON")
    return parser


def write_result(
    out: str | None, *, id: str, title: str, command: str, figures: dict, markdown: str
) -> dict:
    """Print the section and write the module's result (the harness contract) to `out`."""
    result = {
        "id": id,
        "title": title,
        "command": command,
        "figures": figures,
        "markdown": markdown,
    }
    if out:
        Path(out).write_text(json.dumps(result, indent=2, default=str))
    print(markdown)
    return result
