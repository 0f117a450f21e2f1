"""M6: memory growth of the server over many requests. llmops runs as in production (daphne,
LLMOPS_DEBUG=false) on a throwaway database against the simulator (in a process of its own);
after a warm-up, clients send realtime requests with distinct prompts to `/api/v1/requests`
(each billed to the ledger and the budgets) while a sampler reads the daphne process's resident
memory (VmRSS) four times a second, with the number of requests answered so far.

    .venv/bin/python bench/memory_growth.py [--requests N] [--seconds S] [--quick] [--json OUT]

It sends N requests (100,000 unless told), or as many as S seconds allow if that comes first.
Growth is reported per 100,000 requests from the least-squares slope of RSS against requests
answered over the steady-state window, the last 80 % of the requests (the first 20 % are left
out: caches, pools and the allocator's arenas are still settling there, and a slope through
them measures the warm-up). A run of fewer than 100,000 requests reports the slope scaled to
100,000, labelled as extrapolated, with the slopes of the window's two halves beside it so the
reader can see whether the growth is steady.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx  # what the openai SDK ships with (the httpx API)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from tests.live.stack import API_KEY  # noqa: E402

COMMAND = ".venv/bin/python bench/memory_growth.py"
FULL = 100_000  # the target is per this many requests
TARGET_MB = 5.0
CLIENTS = 8
WARMUP = 300  # requests before any reading: connections, imports, the database's pages
WINDOW_FROM = 0.2  # the slope is fitted over the requests after this share of them
SAMPLE_S = 0.25
CHECKPOINTS = 10  # readings shown in the markdown


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def send(base_url: str, first: int, total: int, deadline: float | None, done: list[int]) -> int:
    """Requests numbered from `first` from CLIENTS keep-alive clients until `total` are sent or
    `deadline` (perf_counter) passes; counts answers in done[0]; returns how many were not a
    200."""
    numbers = itertools.count(first)  # next() on it is atomic under the GIL
    lock = threading.Lock()

    def worker(_: int) -> int:
        errors = 0
        with httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
        ) as client:
            while True:
                i = next(numbers)
                if i >= first + total or (deadline is not None and time.perf_counter() > deadline):
                    return errors
                response = client.post(
                    "/api/v1/requests",
                    json={
                        "workload": "product-search",
                        "messages": [{"role": "user", "content": f"Question {i}: in stock?"}],
                        "max_tokens": 8,
                    },
                )
                errors += response.status_code != 200
                with lock:
                    done[0] += 1

    with ThreadPoolExecutor(CLIENTS) as pool:
        return sum(pool.map(worker, range(CLIENTS)))


def measure(total: int, seconds: float | None) -> dict:
    with (
        common.simulator_process(output_tokens=8) as (sim, _sim_proc),
        common.llmops_stack(sim.base_url, prefix="llmops-bench-m6-") as (stack, pid),
    ):
        errors = send(stack.base_url, 0, WARMUP, None, [0])
        done = [0]
        samples: list[tuple[int, float]] = [(0, rss_mb(pid))]
        finished = threading.Event()

        def sample() -> None:
            while not finished.wait(SAMPLE_S):
                samples.append((done[0], rss_mb(pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        started = time.perf_counter()
        sampler.start()
        deadline = started + seconds if seconds else None
        errors += send(stack.base_url, WARMUP, total, deadline, done)
        elapsed = time.perf_counter() - started
        finished.set()
        sampler.join()
        samples.append((done[0], rss_mb(pid)))
    n = done[0]
    start_n = int(n * WINDOW_FROM)
    window = [(x, y) for x, y in samples if x >= start_n]
    mid_n = (start_n + n) / 2
    halves = [[p for p in window if p[0] <= mid_n], [p for p in window if p[0] >= mid_n]]

    def per_100k(points: list[tuple[int, float]]) -> float | None:
        if len(points) < 3:
            return None
        return round(slope([p[0] for p in points], [p[1] for p in points]) * FULL, 2)

    def reading_at(target: float) -> tuple[int, float]:
        return min(samples, key=lambda p: abs(p[0] - target))

    curve = [reading_at(n * k / CHECKPOINTS) for k in range(CHECKPOINTS + 1)]
    return {
        "requests": n,
        "requests_asked": total,
        "seconds_asked": seconds,
        "warmup": WARMUP,
        "errors": errors,
        "seconds": round(elapsed, 1),
        "requests_per_s": round(n / elapsed, 1),
        "samples": len(samples),
        "window": [start_n, n],
        "window_samples": len(window),
        "growth_mb_per_100k": per_100k(window),
        "growth_halves_mb_per_100k": [per_100k(h) for h in halves],
        "window_end_minus_start_mb": round(window[-1][1] - window[0][1], 2) if window else None,
        "end_minus_start_mb": round(samples[-1][1] - samples[0][1], 2),
        "extrapolated": n < FULL,
        "rss_mb": [[x, round(mb, 1)] for x, mb in curve],
    }


def markdown(f: dict, command: str) -> str:
    growth = f["growth_mb_per_100k"]
    n, (w0, w1) = f["requests"], f["window"]
    label = " (extrapolated)" if f["extrapolated"] else ""
    if growth is None:
        verdict = "not measured: too few readings in the window"
    elif growth <= TARGET_MB:
        verdict = f"met{label} (≤ {TARGET_MB:g} MB)"
    else:
        verdict = f"**missed**{label} by {growth - TARGET_MB:.1f} MB (target ≤ {TARGET_MB:g} MB)"
    first, second = f["growth_halves_mb_per_100k"]
    curve = ", ".join(f"{x:,}: {mb} MB" for x, mb in f["rss_mb"])
    what = (
        f"realtime requests for {f['seconds_asked']:g} s"
        if f["seconds_asked"] and n < f["requests_asked"]
        else f"{f['requests_asked']:,} realtime requests"
    )
    lines = [
        f"`{command}`: daphne in production settings, {f['warmup']:,} warm-up requests, then "
        f"{what}: **{n:,} requests** ({CLIENTS} keep-alive clients, "
        f"distinct prompts, {f['requests_per_s']:,} requests/s, {f['errors']} not answered 200). "
        f"The daphne process's resident memory (VmRSS) was read every {SAMPLE_S:g} s with the "
        f"number of requests answered so far ({f['samples']} readings). Growth is the "
        "least-squares slope of RSS against requests over the steady-state window, requests "
        f"{w0:,} to {w1:,} (the last {1 - WINDOW_FROM:.0%}; the first {WINDOW_FROM:.0%} are "
        f"left out as warm-up still settling, {f['window_samples']} readings in the window), "
        "scaled to 100,000 requests.",
        "",
        "| growth per 100,000 requests (slope over the window) | first half of the window | "
        "second half | RSS at the window's end minus its start | target |",
        "|---|---|---|---|---|",
        f"| **{growth} MB**{label} | {first} MB | {second} MB | "
        f"{f['window_end_minus_start_mb']} MB | {verdict} |",
        "",
        f"Resident memory after N requests (from the first reading after the warm-up): {curve}.",
    ]
    if f["extrapolated"]:
        scale = FULL / max(1, w1 - w0)
        target_here = TARGET_MB / scale
        lines += [
            "",
            f"**Extrapolated from {n:,} requests**: the growth per 100,000 is the slope over "
            f"{w1 - w0:,} requests scaled by {scale:,.0f}, not a measurement of 100,000 "
            f"requests. The target's {TARGET_MB:g} MB per 100,000 is "
            f"{target_here * 1024:,.0f} KB over this window",
        ]
        if target_here < 1:
            lines[-1] += (
                ", less than one 1 MiB arena of Python's object allocator: a run this short "
                "can show a growth well above the target but cannot confirm one near it."
            )
        else:
            lines[-1] += "."
        if first is not None and second is not None:
            if second < 0.5 * first:
                lines[-1] += (
                    " The slope of the window's second half is well below its first: growth "
                    "was still slowing down, so the straight line more likely overstates than "
                    "understates what 100,000 requests would add."
                )
            elif second > 2 * max(first, 0.1):
                lines[-1] += (
                    " The slope of the window's second half is well above its first: growth "
                    "was speeding up, so the straight line may understate it."
                )
            else:
                lines[-1] += " The two halves of the window grew at similar rates."
        lines[-1] += (
            f" Run `{COMMAND} --requests {FULL}` (about "
            f"{(FULL + f['warmup']) / f['requests_per_s'] / 60:.0f} min at this rate) to measure "
            "it."
        )
    return "\n".join(lines)


def main() -> None:
    parser = common.arguments(__doc__)
    parser.add_argument("--requests", type=int, default=FULL, help=f"at most this many ({FULL})")
    parser.add_argument("--seconds", type=float, help="stop sending after this many seconds")
    args = parser.parse_args()
    seconds = 15.0 if args.quick else args.seconds
    figures = measure(args.requests, seconds)
    command = COMMAND
    if args.requests != FULL:
        command += f" --requests {args.requests}"
    if seconds:
        command += f" --seconds {seconds:g}"
    common.write_result(
        args.json,
        id="M6",
        title="Memory growth",
        command=command,
        figures=figures,
        markdown=markdown(figures, command),
    )


if __name__ == "__main__":
    main()
