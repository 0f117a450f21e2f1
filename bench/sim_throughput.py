"""The provider simulator's own throughput: how many plain chat completions a second it serves,
so that no benchmark of llmops is measuring the simulator instead.

    .venv/bin/python bench/sim_throughput.py [--quick] [--json OUT]
        [--concurrency 400] [--seconds 5] [--provider openai|anthropic]

Starts the simulator (instant timings) in its own process and drives it from this one with an
aiohttp client over keep-alive connections. Client and server share the machine, so the rate is
a lower bound; the simulator's CPU time (/proc) says what one core of it serves.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

COMMAND = ".venv/bin/python bench/sim_throughput.py"


async def drive(url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float):
    done = errors = 0
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < stop_at:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 200:
                        done += 1
                    else:
                        errors += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return done, errors, elapsed


def measure(provider: str, concurrency: int, seconds: float) -> dict:
    with common.simulator_process() as (sim, proc):
        if provider == "openai":
            url = f"{sim.openai_base_url}/chat/completions"
            payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
        else:
            url = f"{sim.anthropic_base_url}/v1/messages"
            payload = {
                "model": "claude-haiku-4-5",
                "max_tokens": 256,
                "messages": [{"role": "user", "content": "Hello"}],
            }
        headers = {"Authorization": "Bearer sim", "Content-Type": "application/json"}
        asyncio.run(drive(url, json.dumps(payload).encode(), headers, 20, 1))  # warm-up
        cpu_before = common.cpu_seconds(proc.pid)
        done, errors, elapsed = asyncio.run(
            drive(url, json.dumps(payload).encode(), headers, concurrency, seconds)
        )
        busy = (common.cpu_seconds(proc.pid) - cpu_before) / elapsed
    return {
        "provider": provider,
        "concurrency": concurrency,
        "seconds": seconds,
        "elapsed_s": round(elapsed, 1),
        "requests": done,
        "errors": errors,
        "requests_per_s": round(done / elapsed),
        "simulator_cpu_share": round(busy, 2),
        "requests_per_s_per_core": round(done / elapsed / busy) if busy else None,
        "cpu_ms_per_request": round(busy * elapsed * 1000 / max(1, done), 3),
    }


def markdown(f: dict) -> str:
    return "\n".join(
        [
            f"`{COMMAND} --seconds {f['seconds']:g}`: plain {f['provider']} chat completions "
            f"(instant timings) at concurrency {f['concurrency']} from an aiohttp client on "
            "keep-alive connections, client and simulator on the same two cores.",
            "",
            "| requests/s | errors | simulator CPU | requests/s per simulator core | "
            "simulator CPU per request |",
            "|---|---|---|---|---|",
            f"| {f['requests_per_s']:,} | {f['errors']} | {f['simulator_cpu_share']:.0%} of a "
            f"core | ≈ {f['requests_per_s_per_core']:,} | {f['cpu_ms_per_request']} ms |",
            "",
            f"One simulator core serves ≈ {f['requests_per_s_per_core']:,} requests a second, "
            "far above any rate llmops reaches in these benchmarks, so the simulator is never "
            "their bottleneck; its CPU per request is the floor under every arm that goes "
            "through it.",
        ]
    )


def main() -> None:
    parser = common.arguments(__doc__)
    parser.add_argument("--concurrency", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=None, help="5, or 3 with --quick")
    parser.add_argument("--provider", choices=("openai", "anthropic"), default="openai")
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 5.0)
    figures = measure(args.provider, args.concurrency, seconds)
    common.write_result(
        args.json,
        id="SIM",
        title="The provider simulator",
        command=f"{COMMAND} --seconds {seconds:g}",
        figures=figures,
        markdown=markdown(figures),
    )


if __name__ == "__main__":
    main()
