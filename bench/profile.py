"""Where daphne's CPU goes on the serving path: py-spy samples the llmops server while a client
sends requests one after another; prints CPU-ms per request and the functions that hold the
most samples (inclusive and self). `make bench` runs it last (--json): its section of
BENCHMARKS.md is the profile the other sections' "what stands in the way" points to, daphne's
busy samples by area of the serving path. The tool that found what the hot path changes in
llmops/serving.py, dbthreads.py, rows.py and memo.py removed.

Then, where Linux's `perf` is installed (Debian: linux-perf), the layers: perf samples daphne,
and the LiteLLM proxy under the same load, by the code each instruction is in (the Python
interpreter, SQLite, the kernel, the C library, compiled extensions). py-spy sees only Python
frames, so it cannot say how much of a request is interpreting Python and how much is the
database engine or the system calls under it; perf can, for both servers alike.

    .venv/bin/python bench/profile.py [--seconds 15] [--native] [--debug] [--top 40] [--raw OUT]
                                      [--clients 1] [--layers 600] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.litellm_proxy import Comparison  # noqa: E402

PY_SPY = Path(sys.executable).with_name("py-spy")
COMMAND = ".venv/bin/python bench/profile.py"
# The native API names it; the chat path bills the key's default (the same), with no
# X-Workload header, as the OpenAI SDK sends its requests.
WORKLOAD = "product-search"


def call(base_url: str, api_key: str, native: bool) -> None:
    content = f"profile {uuid.uuid4()}"  # a new prompt each time: no response-cache hits
    if native:
        path, body = "/api/v1/requests", {"workload": WORKLOAD}
    else:
        path, body = "/v1/chat/completions", {"model": "gpt-4o-mini"}
    body.update(messages=[{"role": "user", "content": content}], max_tokens=16)
    request = urllib.request.Request(  # noqa: S310 (http to servers this script started)
        base_url + path,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        response.read()


# A sample whose innermost frame is one of these is a thread waiting, not working.
IDLE = ("EpollSelector.select (", "_worker (concurrent/futures/thread.py")
# The areas of the serving path, each by a frame its samples run under (the first that
# matches, in this order); the last three by the library their innermost frames are in.
AREAS = [
    ("admission: API key, body (DRF), routing, the request row and budget hold", "prepare ("),
    (
        "completion: attempt, ledger entry, hold settled, budget counters, request row",
        "_call_succeeded (",
    ),
    ("the native API's answer body", "request_json ("),
    ("the database threads' own work (a unit's set-up, results handed back)", "_WorkItem.run ("),
    ("the outbound call to the provider (httpx)", "httpx"),
    ("daphne and twisted: HTTP parsing, socket reads and writes", "twisted"),
    ("Django's request and response handling", "django/"),
]


# A transaction's end: its commit (SQLite writing its log).
COMMIT_FRAME = "Atomic.__exit__ ("


def busy_stacks(raw: Path) -> Iterator[tuple[list[str], int]]:
    """(frames, samples) of py-spy's raw output, idle threads' waiting left out."""
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames[-1].startswith(IDLE):
            yield frames, int(count)


def areas(raw: Path) -> tuple[int, list[tuple[str, int]]]:
    """Busy samples by area of the serving path."""
    counts: collections.Counter = collections.Counter()
    busy = 0
    for frames, count in busy_stacks(raw):
        busy += count
        for name, marker in AREAS:
            if any(marker in frame for frame in frames):
                counts[name] += count
                break
        else:
            counts["the event loop, thread hops and the rest"] += count
    return busy, counts.most_common()


def share_under(raw: Path, marker: str) -> float:
    """The share of busy samples with `marker` on their stack."""
    busy = under = 0
    for frames, count in busy_stacks(raw):
        busy += count
        under += count if any(marker in frame for frame in frames) else 0
    return under / max(1, busy)


def section(
    n: int, seconds: float, cpu_ms: float, raw: Path, native: bool, clients: int, commits: float
) -> str:
    busy, by_area = areas(raw)
    path = "/api/v1/requests" if native else "/v1/chat/completions"
    lines = [
        f"`{COMMAND}`: py-spy samples daphne (production settings, SQLite) at 500 Hz while "
        f"{'one client posts' if clients == 1 else f'{clients} clients post'} non-streamed "
        f"chat completions to `{path}`, each one after another and with a "
        f"new prompt (no response-cache hit): {n} requests in {seconds:g} s, "
        f"**{cpu_ms:.1f} CPU-ms per request** (py-spy's sampling included). Daphne's busy "
        f"samples ({busy}; threads waiting left out) by area of the serving path:",
        "",
        "| area | share of busy samples |",
        "|---|---|",
        *(f"| {name} | {count / busy:.0%} |" for name, count in by_area),
        "",
        "The two database units are what llmops does that a passthrough does not (they record "
        "the request, its hold and its ledger entry before the answer leaves); the rest is what "
        "any Python gateway on daphne pays per request. Their two commits (SQLite writing its "
        f"log) are {commits:.0%} of the busy samples: the most a group commit (one commit "
        "shared by the requests in flight together, each unit then in a savepoint of its own) "
        "could save at M2's 16 clients, and nothing at M1's one request at a time; the targets "
        "need half of the CPU gone.",
    ]
    return "\n".join(lines)


# The layers a server's CPU time is in, by the file (perf's "shared object") of the instruction
# sampled: the first whose name starts with one of the prefixes; the rest are compiled
# extensions (JSON, decimal, datetime, pickle; LiteLLM's pydantic-core, uvloop, httptools).
LAYERS = [
    ("the Python interpreter (bytecode, objects, dicts, calls)", ("libpython", "python3")),
    ("SQLite (the engine and Python's sqlite3 module)", ("libsqlite3", "_sqlite3.")),
    ("the kernel (system calls: sockets, files, thread wake-ups)", ("[kernel", "[vdso]")),
    ("the C library (memory, copies, locks)", ("libc.so", "libm.so", "ld-linux")),
]
EXTENSIONS = "compiled extensions (JSON, decimal, pydantic-core, uvloop, ...)"
PERF_LINE = re.compile(r"^\s*([\d.]+)%\s+(\S.*?)\s*$")


def perf_layers(servers: dict[str, tuple[int, Callable[[], None]]], requests: int, scratch: Path):
    """perf samples each server's process (name: (pid, load), its threads at 999 Hz) while
    each `load` is called `requests` times, the servers taking turns request by request (so
    that a host speeding up or slowing down meets both alike): {name: {"cpu_ms": CPU-ms per
    request, "layers": {layer: share of its samples}}, or {"error": why}}."""
    for _, load in servers.values():
        for _ in range(50):  # warm, as the py-spy phase is
            load()
    perf = shutil.which("perf") or "perf"
    recording = {
        name: subprocess.Popen(  # noqa: S603
            [perf, "record", "-F", "999", "-p", str(pid), "-o", str(scratch / f"{pid}.data")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, (pid, _) in servers.items()
    }
    time.sleep(1)  # attached
    cpu = {name: common.cpu_seconds(pid) for name, (pid, _) in servers.items()}
    for _ in range(requests):
        for _, load in servers.values():
            load()
    cpu = {name: common.cpu_seconds(pid) - cpu[name] for name, (pid, _) in servers.items()}
    for perf_run in recording.values():
        perf_run.send_signal(2)  # perf writes its data on SIGINT
    found = {}
    for name, (pid, _) in servers.items():
        _, err = recording[name].communicate(timeout=60)
        report = subprocess.run(  # noqa: S603
            [
                perf,
                "report",
                "--stdio",
                "--sort",
                "dso",
                "-g",
                "none",
                "-i",
                f"{scratch}/{pid}.data",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        shares: collections.Counter = collections.Counter()
        for line in report.stdout.splitlines():
            if line.startswith("#") or not (row := PERF_LINE.match(line)):
                continue
            share, dso = float(row[1]) / 100, row[2]
            shares[next((n for n, pre in LAYERS if dso.startswith(pre)), EXTENSIONS)] += share
        if shares:
            found[name] = {"cpu_ms": round(cpu[name] * 1000 / requests, 2), "layers": dict(shares)}
        else:
            why = (err or b"").decode(errors="replace").strip() or report.stderr.strip()
            found[name] = {"error": f"perf recorded nothing: {why[-300:]}"}
    return found


def _ms(server: dict, layer: str) -> float:
    """A layer's CPU-ms per request: its share of the server's CPU per request."""
    return server["layers"].get(layer, 0) * server["cpu_ms"]


def layers_section(found: dict[str, dict], requests: int) -> str:
    """The layers table: a column per server measured."""
    if not found:
        return ""
    names = [name for name, _ in LAYERS] + [EXTENSIONS]
    servers = list(found)
    head = " | ".join(servers)
    rows = [
        f"| {name} | "
        + " | ".join(
            f"{found[s]['layers'].get(name, 0):.0%} ({_ms(found[s], name):.2f} ms)" for s in servers
        )
        + " |"
        for name in names
    ]
    rows.append(
        "| **CPU-ms per request** | "
        + " | ".join(f"**{found[s]['cpu_ms']:.2f}**" for s in servers)
        + " |"
    )
    lines = [
        "",
        "",
        f"**By layer** (`perf record -F 999 -p PID`, then `perf report --sort dso`): {requests} "
        "more requests one after another to each server, the servers taking turns request by "
        "request, the same body and prompts never sent before, sampled by Linux's perf by the "
        "code each instruction is in; each share with the CPU-ms per request it makes of that "
        "server's CPU time measured over the same requests (/proc).",
        "",
        f"| layer | {head} |",
        "|---|" + "---|" * len(servers),
        *rows,
    ]
    ours, theirs = found.get("llmops (daphne)"), found.get("LiteLLM proxy")
    if ours and theirs:
        python, sqlite, kernel = (name for name, _ in LAYERS[:3])
        half = theirs["cpu_ms"] / 2
        cut = ours["cpu_ms"] - half
        shares = ours["layers"].get(python, 0), theirs["layers"].get(python, 0)
        below = ours["layers"].get(sqlite, 0) + ours["layers"].get(kernel, 0)
        lines += [
            "",
            (
                "Both servers spend most of their CPU interpreting Python"
                if min(shares) > 0.5
                else f"llmops spends {shares[0]:.0%} of its CPU interpreting Python and LiteLLM "
                f"{shares[1]:.0%}"
            )
            + f": llmops {_ms(ours, python):.2f} ms per request, LiteLLM "
            f"{_ms(theirs, python):.2f} ms. Below Python, llmops' SQLite takes "
            f"{_ms(ours, sqlite):.2f} ms and its kernel time (the database's file writes, the "
            f"sockets, the hops between threads) {_ms(ours, kernel):.2f} ms, against LiteLLM's "
            f"{_ms(theirs, kernel):.2f} ms in the kernel"
            + (
                ": the database engine and its writes are not where a request's time goes. "
                if below < 0.25
                else f": {below:.0%} of llmops' CPU together. "
            )
            + (
                f"Half of LiteLLM's CPU per request here (M1 and M2 ask for 0.5x) is {half:.2f} "
                f"ms: reaching it takes {cut:.2f} ms off llmops' {ours['cpu_ms']:.2f}, "
                f"{cut / max(_ms(ours, python), 0.01):.0%} of its interpreter time if it all "
                "came from Python, and that Python is spread over the areas above, none a "
                "large part on its own."
                if cut > 0
                else f"llmops' CPU per request is within half of LiteLLM's ({half:.2f} ms)."
            ),
        ]
    return "\n".join(lines)


def summarise(raw: Path, top: int) -> str:
    """py-spy's raw output (one `frame;frame;... count` line per stack) as two top lists."""
    inclusive, own, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
        total += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
        own[frames[-1]] += int(count)
    lines = [f"{total} samples (idle threads excluded)", "", "inclusive:"]
    lines += [f"{n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--native", action="store_true", help="POST /api/v1/requests")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="make run's settings (DEBUG on, log level INFO) instead of production's",
    )
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--clients", type=int, default=1, help="this many clients at once (M2 runs 16)"
    )
    parser.add_argument("--raw", help="keep py-spy's raw samples here")
    parser.add_argument(
        "--layers",
        type=int,
        default=600,
        metavar="N",
        help="then N requests to each of llmops and the LiteLLM proxy under perf, by layer "
        "(0: not; skipped where perf is not installed)",
    )
    parser.add_argument("--json", metavar="OUT", help="write make bench's section here")
    parser.add_argument("--quick", action="store_true", help="5 seconds")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 5
    if not PY_SPY.exists():
        sys.exit(f"{PY_SPY} is missing: `make install` installs it (a dev dependency)")
    scratch = tempfile.TemporaryDirectory(prefix="llmops-profile-")
    raw = Path(args.raw or Path(scratch.name) / "samples.txt")
    layers_skipped = None
    if not args.layers:
        layers_skipped = "not measured (--layers 0)"
    elif not shutil.which("perf"):
        layers_skipped = (
            "not measured: Linux's perf is not installed (Debian: apt install linux-perf)"
        )
    figures: dict = {}
    with contextlib.ExitStack() as running:
        sim, _ = running.enter_context(common.simulator_process(output_tokens=16))
        comparison = Comparison(figures) if layers_skipped is None else None
        if comparison is not None:
            comparison.start(running, sim.openai_base_url)  # it imports while llmops starts
        stack, pid = running.enter_context(
            common.llmops_stack(
                sim.base_url,
                prefix="llmops-profile-",
                **(common.MAKE_RUN_ENV if args.debug else {}),
            )
        )
        for _ in range(50):  # warm: imports, the configuration memo, connections
            call(stack.base_url, stack.api_key, args.native)
        spy = subprocess.Popen(  # noqa: S603
            [
                *(str(PY_SPY), "record", "--pid", str(pid), "--format", "raw"),
                *("--output", str(raw), "--rate", "500", "--nonblocking"),
                *("--duration", str(int(args.seconds) + 1)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)  # py-spy attached
        cpu, started = common.cpu_seconds(pid), time.monotonic()

        def client() -> int:
            n = 0
            while time.monotonic() - started < args.seconds:
                call(stack.base_url, stack.api_key, args.native)
                n += 1
            return n

        with concurrent.futures.ThreadPoolExecutor(args.clients) as clients:
            n = sum(clients.map(lambda _: client(), range(args.clients)))
        cpu = common.cpu_seconds(pid) - cpu
        spy.wait()
        layers: dict[str, dict] = {}
        if comparison is not None:
            layers = _layers(args, stack, pid, comparison, Path(scratch.name))
    print(f"{n} requests in {args.seconds:g} s; daphne: {cpu * 1000 / n:.1f} CPU-ms per request\n")
    print(summarise(raw, args.top))
    for server, found in layers.items():
        print(f"\n{server}: {found}")
    measured = {server: found for server, found in layers.items() if "error" not in found}
    errors = [f"{server}: {found['error']}" for server, found in layers.items() if "error" in found]
    layers_note = layers_skipped or "; ".join(errors) or None
    if args.json:
        busy, by_area = areas(raw)
        commits = share_under(raw, COMMIT_FRAME)
        common.write_result(
            args.json,
            id="PROF",
            title="Where daphne's CPU goes",
            command=COMMAND,
            figures={
                "requests": n,
                "seconds": args.seconds,
                "cpu_ms_per_request": round(cpu * 1000 / n, 2),
                "busy_samples": busy,
                "areas": dict(by_area),
                "commit_share": round(commits, 3),
                "layers": measured,
                "layers_requests": args.layers,
                "layers_note": layers_note,
                "litellm_version": figures.get("litellm_version"),
            },
            markdown=section(
                n, args.seconds, cpu * 1000 / n, raw, args.native, args.clients, commits
            )
            + layers_section(measured, args.layers)
            + (f"\n\nBy layer: {layers_note}." if layers_note else ""),
        )
    scratch.cleanup()


def _layers(args, stack, pid: int, comparison: Comparison, scratch: Path) -> dict[str, dict]:
    """perf_layers of daphne and of the LiteLLM proxy (when it started), the same body."""
    servers = {"llmops (daphne)": (pid, lambda: call(stack.base_url, stack.api_key, args.native))}
    proxy = comparison.ready()
    if proxy is not None and not args.native:  # LiteLLM has no native API: chat only
        servers["LiteLLM proxy"] = (
            proxy.proc.pid,
            lambda: call(proxy.base_url, "unused", False),
        )
    found = perf_layers(servers, args.layers, scratch)
    if proxy is None:
        found["LiteLLM proxy"] = {"error": str(comparison.figures.get("litellm_error"))}
    return found


if __name__ == "__main__":
    main()
