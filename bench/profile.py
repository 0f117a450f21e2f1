"""Where daphne's CPU goes on the serving path: py-spy samples the llmops server while a client
sends requests one after another; prints CPU-ms per request and the functions that hold the
most samples (inclusive and self). `make bench` runs it last (--json): its section of
BENCHMARKS.md is the profile the other sections' "what stands in the way" points to, daphne's
busy samples by area of the serving path. The tool that found what the hot path changes in
llmops/serving.py, dbthreads.py, rows.py and memo.py removed.

    .venv/bin/python bench/profile.py [--seconds 15] [--native] [--debug] [--top 40] [--raw OUT]
                                      [--clients 1] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

PY_SPY = Path(sys.executable).with_name("py-spy")
COMMAND = ".venv/bin/python bench/profile.py"
WORKLOAD = "product-search"


def call(base_url: str, api_key: str, native: bool) -> None:
    content = f"profile {uuid.uuid4()}"  # a new prompt each time: no response-cache hits
    if native:
        path, body = "/api/v1/requests", {"workload": WORKLOAD}
    else:
        path, body = "/v1/chat/completions", {"model": "gpt-4o-mini"}
    body.update(messages=[{"role": "user", "content": content}], max_tokens=16)
    request = urllib.request.Request(  # noqa: S310 (http to the stack this script started)
        base_url + path,
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "X-Workload": WORKLOAD,
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
    parser.add_argument("--json", metavar="OUT", help="write make bench's section here")
    parser.add_argument("--quick", action="store_true", help="5 seconds")
    args = parser.parse_args()
    if args.quick:
        args.seconds = 5
    if not PY_SPY.exists():
        sys.exit(f"{PY_SPY} is missing: `make install` installs it (a dev dependency)")
    scratch = tempfile.TemporaryDirectory(prefix="llmops-profile-")
    raw = Path(args.raw or Path(scratch.name) / "samples.txt")
    with (
        common.simulator_process(output_tokens=16) as (sim, _),
        common.llmops_stack(
            sim.base_url, prefix="llmops-profile-", **(common.MAKE_RUN_ENV if args.debug else {})
        ) as (stack, pid),
    ):
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
    print(f"{n} requests in {args.seconds:g} s; daphne: {cpu * 1000 / n:.1f} CPU-ms per request\n")
    print(summarise(raw, args.top))
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
            },
            markdown=section(
                n, args.seconds, cpu * 1000 / n, raw, args.native, args.clients, commits
            ),
        )
    scratch.cleanup()


if __name__ == "__main__":
    main()
