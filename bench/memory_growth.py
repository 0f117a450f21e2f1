"""M6: memory growth of the server over many requests. llmops runs as in production (daphne,
LLMOPS_DEBUG=false) on a throwaway database against the simulator; after a warm-up, clients
send realtime requests with distinct prompts to `/api/v1/requests` (each billed to the ledger
and the budgets) and the daphne process's resident memory is read at checkpoints.

    .venv/bin/python bench/memory_growth.py [--requests N] [--quick] [--json OUT]

Growth is reported per 100,000 requests from the least-squares slope over the checkpoints after
the warm-up (a single end-minus-start difference would mostly measure allocator noise).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx  # what the openai SDK ships with (the httpx API)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmops.simulator.testing import running_simulator  # noqa: E402
from tests.live.stack import API_KEY, running_llmops  # noqa: E402

COMMAND = ".venv/bin/python bench/memory_growth.py"
FULL = 100_000  # the target is per this many requests
TARGET_MB = 5.0
CHECKPOINTS = 10
CLIENTS = 8


def production_env() -> dict[str, str]:
    """Settings as a deployment runs them: no query log kept per connection, no debug pages."""
    return {
        "LLMOPS_DEBUG": "false",
        "LLMOPS_SECRET_KEY": secrets.token_urlsafe(48),
        "LLMOPS_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "LLMOPS_SECURE_SSL_REDIRECT": "false",
        # The per-key rate limit would answer most of a benchmark's requests with 429.
        "LLMOPS_API_RATE": "100000000/minute",
    }


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


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def send(base_url: str, first: int, count: int) -> int:
    """`count` requests from CLIENTS keep-alive clients; returns how many were not a 200."""

    def worker(offset: int) -> int:
        errors = 0
        with httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
        ) as client:
            for i in range(first + offset, first + count, CLIENTS):
                response = client.post(
                    "/api/v1/requests",
                    json={
                        "workload": "product-search",
                        "messages": [{"role": "user", "content": f"Question {i}: in stock?"}],
                        "max_tokens": 8,
                    },
                )
                errors += response.status_code != 200
        return errors

    with ThreadPoolExecutor(CLIENTS) as pool:
        return sum(pool.map(worker, range(CLIENTS)))


def measure(total: int, warmup: int) -> dict:
    with (
        running_simulator() as sim,
        tempfile.TemporaryDirectory(prefix="llmops-bench-m6-") as data_dir,
        running_llmops(sim.base_url, Path(data_dir), **production_env()) as stack,
    ):
        sim.config(output_tokens=8)
        pid = daphne_pid(int(stack.base_url.rsplit(":", 1)[1]))
        errors = send(stack.base_url, 0, warmup)
        points = [(0, rss_mb(pid))]
        step = total // CHECKPOINTS
        started = time.perf_counter()
        for k in range(1, CHECKPOINTS + 1):
            errors += send(stack.base_url, warmup + (k - 1) * step, step)
            points.append((k * step, rss_mb(pid)))
        seconds = time.perf_counter() - started
    per_request_mb = slope([p[0] for p in points], [p[1] for p in points])
    return {
        "requests": CHECKPOINTS * step,
        "warmup": warmup,
        "errors": errors,
        "seconds": round(seconds, 1),
        "requests_per_s": round(CHECKPOINTS * step / seconds, 1),
        "rss_mb": [[n, round(mb, 1)] for n, mb in points],
        "growth_mb_per_100k": round(per_request_mb * FULL, 2),
        "end_minus_start_mb": round(points[-1][1] - points[0][1], 1),
    }


def markdown(f: dict) -> str:
    growth = f["growth_mb_per_100k"]
    verdict = (
        f"met (≤ {TARGET_MB:g} MB)"
        if growth <= TARGET_MB
        else f"**missed** by {growth - TARGET_MB:.1f} MB (target ≤ {TARGET_MB:g} MB)"
    )
    curve = ", ".join(f"{n:,}: {mb} MB" for n, mb in f["rss_mb"])
    lines = [
        f"`{COMMAND} --requests {f['requests']}`: daphne in production settings, "
        f"{f['warmup']:,} warm-up requests, then {f['requests']:,} realtime requests "
        f"({CLIENTS} keep-alive clients, distinct prompts, {f['requests_per_s']:,} requests/s, "
        f"{f['errors']} not answered 200), the daphne process's resident memory read "
        f"{CHECKPOINTS} times.",
        "",
        "| growth per 100,000 requests (slope) | end - start | target |",
        "|---|---|---|",
        f"| {growth} MB | {f['end_minus_start_mb']} MB | {verdict} |",
        "",
        f"Resident memory after N requests: {curve}.",
    ]
    if f["requests"] < FULL:
        lines += [
            "",
            f"This run sent {f['requests']:,} requests, not {FULL:,}: the growth per 100,000 is "
            f"the measured slope scaled, not a measurement of 100,000; run "
            f"`{COMMAND} --requests {FULL}` (about {FULL / f['requests_per_s'] / 60:.0f} min at "
            "this rate) for that.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=FULL)
    parser.add_argument("--quick", action="store_true", help="2,000 requests, for development")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    total = 2_000 if args.quick else args.requests
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    figures = measure(total, warmup=min(2_000, max(200, total // 10)))
    result = {
        "id": "M6",
        "title": "Memory growth",
        "command": f"{COMMAND} --requests {figures['requests']}",
        "figures": figures,
        "markdown": markdown(figures),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(result["markdown"])


if __name__ == "__main__":
    main()
