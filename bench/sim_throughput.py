"""How many simple chat requests per second the provider simulator serves.

Run by hand: `.venv/bin/python bench/sim_throughput.py [--concurrency 400] [--seconds 10]`.
Starts the simulator (instant timings) in its own process, then drives it from
this one with an aiohttp client over keep-alive connections and prints req/s.
Client and server share the machine, so the figure is a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
SERVER = (
    "import sys; from llmops.simulator.server import run; "
    "from llmops.simulator.state import INSTANT_CONFIG; "
    "run('127.0.0.1', int(sys.argv[1]), INSTANT_CONFIG)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/_sim/health", timeout=1):  # noqa: S310
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("simulator did not start")


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux), to tell server cost from client cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--provider", choices=("openai", "anthropic"), default="openai")
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], cwd=ROOT)  # noqa: S603
    try:
        wait_ready(base)
        if args.provider == "openai":
            url = f"{base}/openai/v1/chat/completions"
            payload = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}
        else:
            url = f"{base}/anthropic/v1/messages"
            payload = {
                "model": "claude-haiku-4-5",
                "max_tokens": 256,
                "messages": [{"role": "user", "content": "Hello"}],
            }
        headers = {"Authorization": "Bearer sim", "Content-Type": "application/json"}
        cpu_before = cpu_seconds(server.pid)
        done, errors, elapsed = asyncio.run(
            drive(url, json.dumps(payload).encode(), headers, args.concurrency, args.seconds)
        )
        busy = (cpu_seconds(server.pid) - cpu_before) / elapsed
        print(
            f"{args.provider}: {done} requests in {elapsed:.1f} s = {done / elapsed:,.0f} req/s "
            f"({errors} errors, concurrency {args.concurrency}); the simulator used "
            f"{busy:.0%} of one core, so one core serves ~{done / elapsed / busy:,.0f} req/s"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
