"""Time to first token added by llmops: the same streamed completion asked of the simulator
directly and through llmops (websocket /ws/stream/ and the OpenAI-compatible SSE endpoint).

Run by hand: `.venv/bin/python bench/ttft.py [--requests 200] [--ttft-ms 0]`.
Starts the simulator in its own process and llmops (daphne, SQLite, the demo) in another, then
asks one request at a time, rotating between the three paths so that drift hits all of them
alike, each with a new prompt (no response-cache hits). Prints the percentiles of each path and
of what llmops adds. Client, simulator and llmops share this machine's cores, so the added
figure is an upper bound of llmops' own cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sim_throughput import SERVER, free_port, wait_ready  # noqa: E402
from llmops.simulator.testing import SimulatorHandle  # noqa: E402
from tests.live.stack import running_llmops  # noqa: E402

WORKLOAD = "product-search"  # acme's realtime workload (gpt-4o-mini first)


def direct_ttft(client: openai.OpenAI, prompt: str, max_tokens: int) -> float:
    started = time.perf_counter()
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    return (first - started) * 1000


def websocket_ttft(ws, prompt: str, max_tokens: int) -> float:
    started = time.perf_counter()
    ws.send(
        json.dumps(
            {
                "type": "start",
                "workload": WORKLOAD,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
            }
        )
    )
    first = None
    while True:
        message = json.loads(ws.recv(timeout=30))
        if message["type"] == "delta" and first is None:
            first = time.perf_counter()
        elif message["type"] in ("done", "error"):
            assert message["type"] == "done", message
            return (first - started) * 1000


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return f"p50 {cuts[49]:6.1f}  p90 {cuts[89]:6.1f}  p99 {cuts[98]:6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="per path")
    parser.add_argument("--ttft-ms", type=int, default=0, help="the simulator's own TTFT")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    port = free_port()
    sim = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], cwd=ROOT)  # noqa: S603
    try:
        wait_ready(sim)
        SimulatorHandle(sim).config(ttft_ms=args.ttft_ms, tokens_per_s=0)
        with (
            tempfile.TemporaryDirectory() as data_dir,
            running_llmops(sim, Path(data_dir), LLMOPS_API_RATE="100000/minute") as llmops,
        ):
            direct = openai.OpenAI(
                base_url=SimulatorHandle(sim).openai_base_url, api_key="sim", max_retries=0
            )
            gateway = llmops.openai(workload=WORKLOAD)
            samples: dict[str, list[float]] = {"direct": [], "websocket": [], "sse": []}
            with llmops.ws("/ws/stream/") as ws:
                for i in range(args.requests + 10):
                    prompt = f"Bench question {i}: which boot for wet trails?"
                    results = {
                        "direct": direct_ttft(direct, prompt, args.max_tokens),
                        "websocket": websocket_ttft(ws, f"ws {prompt}", args.max_tokens),
                        "sse": direct_ttft(gateway, f"sse {prompt}", args.max_tokens),
                    }
                    if i >= 10:  # the first few warm connections and caches up
                        for path, ms in results.items():
                            samples[path].append(ms)
    finally:
        server.terminate()
        server.wait(timeout=10)

    print(
        f"time to first token, {args.requests} streamed requests per path, simulator TTFT "
        f"{args.ttft_ms} ms, max_tokens {args.max_tokens}"
    )
    for path, values in samples.items():
        print(f"  {path:<10} {percentiles(values)}")
    for path in ("websocket", "sse"):
        added = [b - a for a, b in zip(samples["direct"], samples[path], strict=True)]
        print(f"  added by llmops ({path}): {percentiles(added)}")


if __name__ == "__main__":
    main()
