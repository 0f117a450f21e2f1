"""M6: memory growth of the server over many requests. llmops runs as in production (daphne,
LLMOPS_DEBUG=false) on a throwaway database against the simulator (in a process of its own);
after a warm-up, CLIENTS concurrent clients (one httpx AsyncClient, keep-alive connections)
send N realtime requests to `/api/v1/requests` (each billed to the ledger and the budgets),
every one with a prompt never sent before (no response-cache hits), while a sampler reads the
daphne process's resident memory (VmRSS) four times a second with the number of requests
answered so far. Progress goes to stderr every 10,000 requests.

    .venv/bin/python bench/memory_growth.py [--requests N] [--quick] [--json OUT]

N is 100,000 unless told (the target: at most 5 MB of growth per 100,000 requests, measured
over 100,000); --quick sends 3,000. The growth is measured, not fitted: the RSS after the last
of the N requests was answered minus the RSS before the first was sent (both read with the
server idle, after the warm-up). For N = 100,000 that is the figure the target is about; for
another N it is scaled to 100,000 and labelled extrapolated. Beside it: the peak reading, the
growth over the last 80 % of the requests (the first 20 % hold what is still settling: caches,
pools, the allocator's arenas), and the least-squares slope of RSS against requests over those
80 %, so a reader can tell a plateau reached early from a steady climb.
"""

from __future__ import annotations

import asyncio
import re
import resource
import sys
import time
from pathlib import Path

import httpx2 as httpx  # the httpx API, as the openai SDK ships it

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from tests.live.stack import API_KEY  # noqa: E402

COMMAND = ".venv/bin/python bench/memory_growth.py"
FULL = 100_000  # the target is per this many requests
QUICK = 3_000
TARGET_MB = 5.0
CLIENTS = 12  # concurrent requests: enough to keep daphne busy, few enough not to queue long
WARMUP = 300  # requests before the first reading: connections, imports, the database's pages
WINDOW_FROM = 0.2  # the trend is over the requests after this share of them
SAMPLE_S = 0.25
PROGRESS = 10_000  # a line on stderr every this many requests
CHECKPOINTS = 10  # readings shown in the markdown
MAX_ERRORS = 1_000  # more than this many failed requests: the run is broken, stop
SETTLE_S = 1.0  # idle before the start and end readings (in-flight objects freed)


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def slope(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def progress(text: str) -> None:
    print(f"M6: {text}", file=sys.stderr, flush=True)


async def send(base_url: str, first: int, total: int, pid: int | None = None) -> dict:
    """Requests numbered `first` to `first + total - 1`, CLIENTS at a time over one keep-alive
    AsyncClient. With the daphne `pid`, reads its RSS every SAMPLE_S seconds as (answered so
    far, MB) and reports progress every PROGRESS requests."""
    numbers = iter(range(first, first + total))  # shared by the workers (one event loop)
    state = {"done": 0, "errors": 0, "error_texts": set()}
    samples: list[tuple[int, float]] = []
    started = time.perf_counter()

    def fail(text: str) -> None:
        state["errors"] += 1
        if len(state["error_texts"]) < 3:
            state["error_texts"].add(text[:200])
        if state["errors"] > MAX_ERRORS:
            raise RuntimeError(
                f"more than {MAX_ERRORS} requests failed: {'; '.join(state['error_texts'])}"
            )

    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
        trust_env=False,
        limits=httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS),
    ) as client:

        async def worker() -> None:
            for i in numbers:
                try:
                    response = await client.post(
                        "/api/v1/requests",
                        json={
                            "workload": "product-search",
                            "messages": [{"role": "user", "content": f"Question {i}: in stock?"}],
                            "max_tokens": 8,
                        },
                    )
                    if response.status_code != 200:
                        fail(f"{response.status_code} {response.text}")
                except httpx.HTTPError as exc:
                    fail(f"{type(exc).__name__}: {exc}")
                state["done"] += 1
                done = state["done"]
                if pid is not None and done % PROGRESS == 0 and done < total:
                    elapsed = time.perf_counter() - started
                    progress(
                        f"{done:,} of {total:,} requests in {elapsed:,.0f} s "
                        f"({done / elapsed:,.1f}/s), RSS {rss_mb(pid):.1f} MB, "
                        f"{state['errors']} failed"
                    )

        async def sample() -> None:
            while True:
                await asyncio.sleep(SAMPLE_S)
                samples.append((state["done"], rss_mb(pid)))

        sampler = asyncio.create_task(sample()) if pid is not None else None
        try:
            await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        finally:
            if sampler is not None:
                sampler.cancel()
    return {
        "done": state["done"],
        "errors": state["errors"],
        "error_texts": sorted(state["error_texts"]),
        "seconds": time.perf_counter() - started,
        "samples": samples,
    }


def measure(total: int) -> dict:
    with (
        common.simulator_process(output_tokens=8) as (sim, sim_proc),
        common.llmops_stack(sim.base_url, prefix="llmops-bench-m6-") as (stack, pid),
    ):
        warm = asyncio.run(send(stack.base_url, 0, WARMUP))
        time.sleep(SETTLE_S)
        start_mb = rss_mb(pid)
        cpu = common.cpu_seconds(pid), common.cpu_seconds(sim_proc.pid), client_cpu_s()
        progress(f"{total:,} requests, {CLIENTS} at a time; RSS {start_mb:.1f} MB at the start")
        run = asyncio.run(send(stack.base_url, WARMUP, total, pid))
        cpu_used = [
            after - before
            for after, before in zip(
                (common.cpu_seconds(pid), common.cpu_seconds(sim_proc.pid), client_cpu_s()),
                cpu,
                strict=True,
            )
        ]
        time.sleep(SETTLE_S)
        end_mb = rss_mb(pid)
        progress(
            f"{run['done']:,} requests in {run['seconds']:,.0f} s "
            f"({run['done'] / run['seconds']:,.1f}/s); RSS {end_mb:.1f} MB at the end"
        )
    n = run["done"]
    samples = [(0, start_mb), *run["samples"], (n, end_mb)]
    peak_n, peak_mb = max(samples, key=lambda p: p[1])
    window_n = int(n * WINDOW_FROM)
    window = [p for p in samples if p[0] >= window_n]
    window_start_mb = min(window, key=lambda p: p[0] - window_n)[1]
    window_slope = (
        slope([p[0] for p in window], [p[1] for p in window]) * FULL if len(window) >= 3 else None
    )

    def reading_at(target: float) -> tuple[int, float]:
        return min(samples, key=lambda p: abs(p[0] - target))

    curve = [reading_at(n * k / CHECKPOINTS) for k in range(CHECKPOINTS + 1)]
    growth = end_mb - start_mb
    return {
        "requests": n,
        "clients": CLIENTS,
        "warmup": WARMUP,
        "warmup_errors": warm["errors"],
        "errors": run["errors"],
        "error_texts": run["error_texts"],
        "seconds": round(run["seconds"], 1),
        "requests_per_s": round(n / run["seconds"], 1),
        "cpu_ms_per_request": {
            name: round(used * 1000 / max(1, n), 2)
            for name, used in zip(("daphne", "simulator", "client"), cpu_used, strict=True)
        },
        "samples": len(samples),
        "rss_start_mb": round(start_mb, 2),
        "rss_end_mb": round(end_mb, 2),
        "rss_peak_mb": round(peak_mb, 2),
        "rss_peak_at_request": peak_n,
        "growth_mb": round(growth, 2),
        "growth_mb_per_100k": round(growth * FULL / max(1, n), 2),
        "extrapolated": n != FULL,
        "window": [window_n, n],
        "window_growth_mb": round(end_mb - window_start_mb, 2),
        "window_slope_mb_per_100k": None if window_slope is None else round(window_slope, 2),
        # how far RSS moves up and down once settled: the lowest and highest reading there
        "window_range_mb": [
            round(min(p[1] for p in window), 1),
            round(max(p[1] for p in window), 1),
        ],
        "rss_mb": [[x, round(mb, 1)] for x, mb in curve],
    }


def markdown(f: dict, command: str) -> str:
    n, (w0, w1) = f["requests"], f["window"]
    growth = f["growth_mb_per_100k"]
    label = " (extrapolated)" if f["extrapolated"] else ""
    if growth <= TARGET_MB:
        verdict = f"met{label} (≤ {TARGET_MB:g} MB)"
    else:
        verdict = f"**missed**{label} by {growth - TARGET_MB:.1f} MB (target ≤ {TARGET_MB:g} MB)"
    cpu = f["cpu_ms_per_request"]
    curve = ", ".join(f"{x:,}: {mb} MB" for x, mb in f["rss_mb"])
    trend = f["window_slope_mb_per_100k"]
    low, high = f["window_range_mb"]
    measured = (
        f"**{f['growth_mb']:.2f} MB** (measured over the 100,000)"
        if not f["extrapolated"]
        else f"{f['growth_mb']:.2f} MB over {n:,}; **{growth:.2f} MB** scaled to 100,000 "
        "(extrapolated)"
    )
    errors = f"{f['errors']} not answered 200" + (
        f" ({'; '.join(f['error_texts'])})" if f["error_texts"] else ""
    )
    lines = [
        f"`{command}`: daphne in production settings, {f['warmup']:,} warm-up requests, then "
        f"**{n:,} realtime requests** to `/api/v1/requests` (`product-search`, `max_tokens` 8, "
        f"every prompt new, so no response-cache hits; {f['clients']} at a time over one httpx "
        f"AsyncClient with keep-alive connections) in {f['seconds']:,.0f} s, "
        f"{f['requests_per_s']:,} requests/s, {errors}. CPU per request: daphne "
        f"{cpu['daphne']} ms, simulator {cpu['simulator']} ms, client {cpu['client']} ms (the "
        "three share the 2 cores). The daphne process's resident memory (VmRSS) was read "
        f"before the first request and after the last ({SETTLE_S:g} s after the warm-up and "
        f"after the last answer, the server idle both times) and every {SAMPLE_S:g} s in "
        f"between with the number of requests answered so far ({f['samples']:,} readings). "
        "Growth is the reading after the last request minus the reading before the first.",
        "",
        "| RSS at the start | at the end | peak (after request) | growth over the run | "
        f"growth over the last {1 - WINDOW_FROM:.0%} (requests {w0:,} to {w1:,}) | "
        "slope over the same, per 100,000 | target: ≤ 5 MB per 100,000 |",
        "|---|---|---|---|---|---|---|",
        f"| {f['rss_start_mb']:.1f} MB | {f['rss_end_mb']:.1f} MB | {f['rss_peak_mb']:.1f} MB "
        f"({f['rss_peak_at_request']:,}) | {measured} | {f['window_growth_mb']:.2f} MB | "
        f"{'—' if trend is None else f'{trend:.2f} MB'} | {verdict} |",
        "",
        f"Resident memory after N requests (from the reading before the first): {curve}.",
        "",
        f"Of the {f['growth_mb']:.2f} MB, {f['growth_mb'] - f['window_growth_mb']:.2f} MB came "
        f"in the first {WINDOW_FROM:.0%} of the requests and {f['window_growth_mb']:.2f} MB in "
        f"the last {1 - WINDOW_FROM:.0%}, where the readings went up and down between "
        f"{low:.1f} and {high:.1f} MB: RSS does not only climb, and the last reading, on which "
        "the growth rests, is one point in that band.",
    ]
    if f["extrapolated"]:
        lines += [
            "",
            f"**Extrapolated from {n:,} requests**: the growth per 100,000 is the growth over "
            f"{n:,} requests scaled by {FULL / max(1, n):,.1f}, not a measurement of 100,000 "
            f"requests. The target's {TARGET_MB:g} MB per 100,000 is "
            f"{TARGET_MB * n / FULL * 1024:,.0f} KB over {n:,} requests",
        ]
        if TARGET_MB * n / FULL < 1:
            lines[-1] += (
                ", less than one 1 MiB arena of Python's object allocator: a run this short "
                "can show a growth well above the target but cannot confirm one near it, and "
                "what settles in the first requests (caches, pools, arenas) weighs on it far "
                "more than on 100,000."
            )
        else:
            lines[-1] += "."
        rate = f["requests_per_s"]
        lines[-1] += (
            f" Run `{COMMAND}` (100,000 requests, about "
            f"{(FULL + f['warmup']) / rate / 60:.0f} min at this rate) to measure it."
        )
    return "\n".join(lines)


def main() -> None:
    parser = common.arguments(__doc__)
    parser.add_argument(
        "--requests",
        type=int,
        help=f"how many requests to measure over ({FULL:,}; {QUICK:,} with --quick)",
    )
    args = parser.parse_args()
    total = args.requests or (QUICK if args.quick else FULL)
    if total < 10:
        parser.error("--requests must be at least 10")
    figures = measure(total)
    command = COMMAND
    if args.requests and args.requests != FULL:
        command += f" --requests {args.requests}"
    elif args.quick:
        command += " --quick"
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
