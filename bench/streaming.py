"""M3: streaming through llmops. Time to first token added over SSE and over the websocket,
the gaps between frames, proof that frames are passed on as they come (not buffered), and how
many concurrent streams run without a stall.

    .venv/bin/python bench/streaming.py [--quick] [--json OUT]

Three parts, each against a simulator in its own process and llmops (daphne, production
settings, SQLite) pointed at it:

1. TTFT: one stream at a time, the simulator with no time to first token and no pacing; the
   arms (the simulator directly, the floor passthrough, llmops' OpenAI-compatible SSE, llmops'
   native SSE, llmops' websocket `/ws/stream/`) take turns request by request in interleaved
   rounds, each request with a new prompt (no response-cache hits). Added TTFT = the arm's TTFT
   minus the direct arm's (per round, the difference of p50s; median over rounds).
2. Frames: the simulator paced at FRAME_RATE frames per second; the arrival time of every
   content frame at the client, directly and through llmops.
3. Concurrency: N streams at once through llmops' SSE (paced as in 2, started over a ramp,
   all ending together a hold after the last has started); a stream stalls if two of its
   frames arrive more than STALL_MS apart, if it falls more than STALL_MS behind the
   simulator's pace, or if it fails (the same definition as when the module's target was 100
   streams: the target moved to 200, the bar for a stall did not). N starts at the target, 200,
   the top of the ladder: with a stall, N halves (100, 50, 25) until a step runs without one.
   No step goes above 200: at 400 streams the client and the simulator, on the same 2 cores,
   would need most of a core themselves, and the module would pass its 3 minutes. The
   largest N that stalled is run again directly against the simulator, the control that the
   client and the simulator are not what stalls. --quick tries 50 and 25 only, so it can show
   the target missed (a stall at 50) but not met.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import httpx2 as httpx  # the httpx API, as the openai SDK ships it

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.passthrough import running_passthrough  # noqa: E402

COMMAND = ".venv/bin/python bench/streaming.py"
WORKLOAD = "product-search"
TTFT_MAX_TOKENS = 16
FRAME_RATE = 50  # frames (words) per second from the simulator in parts 2 and 3
FRAME_TOKENS = 60  # part 2: about a second of frames
STALL_MS = 250.0  # a pause a reader notices
STRICT_GAP_MS = 3 * 1000 / FRAME_RATE  # three frame intervals
START_RATE = 10  # part 3: new streams a second during the ramp (admission costs CPU too)
TARGET_ADDED_TTFT_MS = 5.0
# The per-socket message rate (10 a second by default, an abuse guard like the per-key request
# rate that common.production_env lifts) out of part 1's way: its arms take turns stream by
# stream, so the websocket arm starts a stream every few tens of milliseconds.
SOCKET_RATE = {"LLMOPS_WS_MESSAGES_PER_SECOND": "10000"}
TARGET_STREAMS = 200
ARM_LABELS = {
    "direct": "simulator directly (SSE)",
    "floor": "floor: minimal aiohttp passthrough (SSE)",
    "llmops_sse": "llmops `/v1/chat/completions` (SSE)",
    "llmops_native": "llmops `/api/v1/requests` (SSE)",
    "llmops_ws": "llmops `/ws/stream/` (websocket)",
}


# --- clients: each returns the arrival times (perf_counter) of the content frames -----------


def openai_body(prompt: str, max_tokens: int) -> dict:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
    }


def native_body(prompt: str, max_tokens: int) -> dict:
    return {
        "workload": WORKLOAD,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
    }


def openai_frame(line: str) -> bool | None:
    """True for an SSE line carrying content, None at [DONE]; raises on an error event."""
    if not line.startswith("data:"):
        return False
    payload = line[5:].strip()
    if payload == "[DONE]":
        return None
    data = json.loads(payload)
    if "error" in data:
        raise RuntimeError(f"stream error: {data['error']}")
    return bool(data.get("choices") and data["choices"][0]["delta"].get("content"))


class SseArm:
    def __init__(self, name: str, url: str, headers: dict[str, str], native: bool = False):
        self.name, self.url, self.headers, self.native = name, url, headers, native

    def stream(self, client: httpx.Client, prompt: str, max_tokens: int) -> tuple[float, list]:
        body = (native_body if self.native else openai_body)(prompt, max_tokens)
        frames: list[float] = []
        started = time.perf_counter()
        with client.stream("POST", self.url, json=body, headers=self.headers) as response:
            if response.status_code != 200:
                response.read()
                raise RuntimeError(f"{self.name}: {response.status_code} {response.text[:300]}")
            event = None
            for line in response.iter_lines():
                now = time.perf_counter()
                if self.native:
                    if line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        if event == "delta":
                            frames.append(now)
                        elif event == "error":
                            raise RuntimeError(f"{self.name}: {line}")
                else:
                    kind = openai_frame(line)
                    if kind:
                        frames.append(now)
        if not frames:
            raise RuntimeError(f"{self.name}: no content frames")
        return started, frames


class WsArm:
    name = "llmops_ws"

    def __init__(self, ws):
        self.ws = ws

    def stream(self, client, prompt: str, max_tokens: int) -> tuple[float, list]:
        frames: list[float] = []
        started = time.perf_counter()
        self.ws.send(
            json.dumps(
                {
                    "type": "start",
                    "workload": WORKLOAD,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": max_tokens,
                }
            )
        )
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message["type"] == "delta":
                frames.append(time.perf_counter())
            elif message["type"] == "done":
                return started, frames
            elif message["type"] == "error":
                raise RuntimeError(f"websocket: {message}")


# --- part 1: time to first token ------------------------------------------------------------


def ttft_rounds(arms: list, client: httpx.Client, rounds: int, per_round: int, warmup: int):
    samples = {arm.name: [[] for _ in range(rounds)] for arm in arms}
    serial = 0

    def one(arm) -> float:
        nonlocal serial
        serial += 1
        prompt = f"Bench stream {serial} ({arm.name}): which boot for wet trails?"
        started, frames = arm.stream(client, prompt, TTFT_MAX_TOKENS)
        return (frames[0] - started) * 1000

    for _ in range(warmup):
        for arm in arms:
            one(arm)
    for r in range(rounds):
        for i in range(per_round):
            shift = (i + r) % len(arms)
            for arm in arms[shift:] + arms[:shift]:
                samples[arm.name][r].append(one(arm))
    direct = samples["direct"]
    result = {}
    for name, per_round_values in samples.items():
        pooled = [ms for values in per_round_values for ms in values]
        row = {"ttft_ms": common.summary(pooled)}
        if name != "direct":
            row["added_p50_ms"] = common.spread(
                [
                    common.percentile(a, 50) - common.percentile(d, 50)
                    for a, d in zip(per_round_values, direct, strict=True)
                ]
            )
            direct_pooled = [ms for values in direct for ms in values]
            row["added_p99_ms"] = round(
                common.percentile(pooled, 99) - common.percentile(direct_pooled, 99), 2
            )
        result[name] = row
    return result


# --- part 2: frames, paced ------------------------------------------------------------------


def frame_runs(arms: list, client: httpx.Client, streams: int) -> dict:
    runs: dict[str, list[tuple[float, list[float]]]] = {arm.name: [] for arm in arms}
    for i in range(streams):
        shift = i % len(arms)
        for arm in arms[shift:] + arms[:shift]:
            prompt = f"Bench paced stream {i} ({arm.name}): tell me about tents."
            runs[arm.name].append(arm.stream(client, prompt, FRAME_TOKENS))
    result = {}
    for name, streams_seen in runs.items():
        gaps = [(b - a) * 1000 for _, frames in streams_seen for a, b in itertools.pairwise(frames)]
        first = [(frames[0] - started) * 1000 for started, frames in streams_seen]
        last = [(frames[-1] - started) * 1000 for started, frames in streams_seen]
        result[name] = {
            "streams": len(streams_seen),
            "frames_per_stream": statistics.median(len(f) for _, f in streams_seen),
            "gap_ms": common.summary(gaps),
            "first_frame_ms": round(statistics.median(first), 1),
            "last_frame_ms": round(statistics.median(last), 1),
            # frames that arrived within 5 ms of the previous one: a buffered stream would
            # arrive as one burst, so nearly all of its gaps would be that small
            "share_of_gaps_under_5ms": round(sum(g < 5 for g in gaps) / max(1, len(gaps)), 3),
        }
    return result


# --- part 3: concurrent streams -------------------------------------------------------------


def ramp_and_tokens(n: int, hold_s: float) -> tuple[float, int]:
    """Start N streams at START_RATE a second, all running at once for `hold_s` after the last
    one started: (ramp seconds, frames of the first stream, the longest)."""
    ramp = max(1.0, n / START_RATE)
    return ramp, int((ramp + hold_s) * FRAME_RATE)


def stream_tokens(i: int, n: int, ramp_s: float, hold_s: float) -> int:
    """Frames of the i-th of N streams: it starts ramp_s * i / n after the first and ends
    with the others, `hold_s` after the last has started (so no step has a ramp-down, in
    which streams end one by one and the load falls)."""
    return max(1, int((ramp_s * (1 - i / n) + hold_s) * FRAME_RATE))


async def concurrent_streams(
    url: str, headers: dict, n: int, ramp_s: float, hold_s: float, tag: str, pid: int | None = None
) -> dict:
    """N paced SSE streams at once (starts spread over `ramp_s`, all ending `hold_s` after the
    last start): failures, stalls, gaps, and (with the server's `pid`) its CPU per frame
    while all N streams were running."""
    timeout = aiohttp.ClientTimeout(total=180, sock_read=60)
    connector = aiohttp.TCPConnector(limit=0)
    results: list[dict] = []
    cpu_samples: list[tuple[float, float]] = []
    running = True

    async def sample_cpu() -> None:
        while running and pid is not None:
            cpu_samples.append((time.perf_counter(), common.cpu_seconds(pid)))
            await asyncio.sleep(0.1)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(i: int, due: float) -> None:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            started = time.perf_counter()
            frames: list[float] = []
            error = None
            try:
                body = openai_body(
                    f"Bench concurrent stream {tag} {n}/{i}: a tent?",
                    stream_tokens(i, n, ramp_s, hold_s),
                )
                async with session.post(url, json=body, headers=headers) as response:
                    if response.status != 200:
                        error = f"{response.status} {(await response.text())[:200]}"
                    else:
                        async for raw in response.content:
                            line = raw.decode().strip()
                            if line and openai_frame(line):
                                frames.append(time.perf_counter())
            except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            results.append({"started": started, "frames": frames, "error": error})

        sampler = asyncio.create_task(sample_cpu())
        start = time.perf_counter() + 0.1
        await asyncio.gather(*(one(i, start + ramp_s * i / n) for i in range(n)))
        running = False
        await sampler
    ok = [r for r in results if r["error"] is None and r["frames"]]
    for r in ok:
        frames = r["frames"]
        r["gaps"] = [(b - a) * 1000 for a, b in itertools.pairwise(frames)]
        r["max_gap"] = max(r["gaps"], default=0.0)
        # how far each frame is behind the simulator's pace (frame k is due k/rate after the
        # first): a stream relayed slower than it is produced falls further behind with every
        # frame, even when no single gap is long
        r["lags"] = [((t - frames[0]) - k / FRAME_RATE) * 1000 for k, t in enumerate(frames)]
        r["max_lag"] = max(r["lags"])
        r["stalled"] = r["max_gap"] > STALL_MS or r["max_lag"] > STALL_MS
    all_gaps = [g for r in ok for g in r["gaps"]]
    # the most streams that were between their first and their last frame at the same moment
    edges = sorted([(r["frames"][0], 1) for r in ok] + [(r["frames"][-1], -1) for r in ok])
    live = peak = 0
    for _, step in edges:
        live += step
        peak = max(peak, live)
    # the hold: from the moment every stream had its first frame to the first stream's end
    hold = None
    if ok and len(ok) == n:
        begin = max(r["frames"][0] for r in ok)
        end = min(r["frames"][-1] for r in ok)
        if end > begin:
            hold = (begin, end)
    stalled_in_hold = None
    server_us_per_frame = None
    if hold:
        stalled_in_hold = 0
        for r in ok:
            inside_lags = [
                lag
                for lag, t in zip(r["lags"], r["frames"], strict=True)
                if hold[0] <= t <= hold[1]
            ]
            long_gap = any(
                g > STALL_MS and hold[0] <= a <= hold[1]
                for g, a in zip(r["gaps"], r["frames"], strict=False)
            )
            fell_behind = bool(inside_lags) and inside_lags[-1] - inside_lags[0] > STALL_MS
            stalled_in_hold += long_gap or fell_behind
        inside = [(t, c) for t, c in cpu_samples if hold[0] <= t <= hold[1]]
        if len(inside) >= 2:
            (t0, c0), (t1, c1) = inside[0], inside[-1]
            frames_inside = sum(t0 <= t <= t1 for r in ok for t in r["frames"])
            if frames_inside:
                server_us_per_frame = round((c1 - c0) * 1e6 / frames_inside, 1)
    return {
        "n": n,
        "failed": len(results) - len(ok),
        "stalled": sum(r["stalled"] for r in ok),
        "stalled_by_gap": sum(r["max_gap"] > STALL_MS for r in ok),
        "stalled_in_hold": stalled_in_hold,
        "hold_s": round(hold[1] - hold[0], 1) if hold else None,
        "over_strict_gap": sum(r["max_gap"] > STRICT_GAP_MS for r in ok),
        "peak_concurrent": peak,
        "gap_ms": common.summary(all_gaps) if all_gaps else None,
        "max_gap_ms": round(max(all_gaps), 1) if all_gaps else None,
        "max_lag_ms": round(max(r["max_lag"] for r in ok), 1) if ok else None,
        "ttft_ms": common.summary([(r["frames"][0] - r["started"]) * 1000 for r in ok])
        if ok
        else None,
        "server_us_per_frame": server_us_per_frame,
        "errors": sorted({r["error"] for r in results if r["error"]})[:3],
    }


# --- the run --------------------------------------------------------------------------------


def clean(row: dict) -> bool:
    return not row["stalled"] and not row["failed"]


def measure(quick: bool) -> dict:
    # 6 rounds of 25 streams per arm gave added TTFT p50s within about 10 % of their median
    # (drift between rounds, not a p50 of too few streams); 20 per round keeps that.
    rounds, per_round, warmup = (2, 10, 5) if quick else (6, 20, 10)
    # 3 streams of 60 frames per arm (177 gaps each): a proxy that buffers would show in every
    # one of them
    frame_streams = 2 if quick else 3
    # part 3 starts at the target, the top of the ladder, and halves from there while a step
    # stalls (the steps below it cost time only when it stalls)
    first, up, down = (50, [], [25]) if quick else (TARGET_STREAMS, [], [100, 50, 25])
    hold_s = 2.0 if quick else 4.0  # how long all N streams run at once
    figures: dict = {
        "quick": quick,
        "rounds": rounds,
        "requests_per_round_per_arm": per_round,
        "frame_rate": FRAME_RATE,
        "frame_tokens": FRAME_TOKENS,
        "stall_ms": STALL_MS,
        "strict_gap_ms": STRICT_GAP_MS,
        "start_rate": START_RATE,
        "hold_s": hold_s,
        "search": {"first": first, "up": up, "down": down},
    }
    with (
        common.simulator_process(output_tokens=TTFT_MAX_TOKENS) as (sim, sim_proc),
        running_passthrough(sim.base_url) as (floor_url, _floor),
        common.llmops_stack(sim.base_url, prefix="llmops-bench-m3-", **SOCKET_RATE) as (
            stack,
            daphne,
        ),
        httpx.Client(timeout=60, trust_env=False) as client,
        stack.ws("/ws/stream/") as ws,
    ):
        auth = {"Authorization": f"Bearer {stack.api_key}"}
        sim_auth = {"Authorization": "Bearer sim"}
        direct = SseArm("direct", f"{sim.openai_base_url}/chat/completions", sim_auth)
        floor = SseArm("floor", f"{floor_url}/openai/v1/chat/completions", sim_auth)
        # No X-Workload header, as the OpenAI SDK sends none: the key's default (WORKLOAD).
        llmops_sse = SseArm("llmops_sse", f"{stack.base_url}/v1/chat/completions", auth)
        native = SseArm("llmops_native", f"{stack.base_url}/api/v1/requests", auth, native=True)
        websocket = WsArm(ws)

        started, cpu = time.perf_counter(), common.cpu_seconds(daphne)
        figures["ttft"] = ttft_rounds(
            [direct, floor, llmops_sse, native, websocket], client, rounds, per_round, warmup
        )
        figures["ttft_seconds"] = round(time.perf_counter() - started, 1)
        # three of the five arms go through daphne
        figures["daphne_cpu_ms_per_short_stream"] = round(
            (common.cpu_seconds(daphne) - cpu) * 1000 / (3 * (rounds * per_round + warmup)), 1
        )

        sim.config(tokens_per_s=FRAME_RATE, output_tokens=FRAME_TOKENS)
        started = time.perf_counter()
        figures["frames"] = frame_runs(
            [direct, floor, llmops_sse, websocket], client, frame_streams
        )
        figures["frames_seconds"] = round(time.perf_counter() - started, 1)

        figures["concurrency"] = []
        figures["control"] = None
        started = time.perf_counter()

        def step(n: int) -> dict:
            ramp, tokens = ramp_and_tokens(n, hold_s)
            sim.config(output_tokens=tokens)
            row = asyncio.run(
                concurrent_streams(
                    llmops_sse.url, llmops_sse.headers, n, ramp, hold_s, "llmops", daphne
                )
            )
            row["ramp_s"], row["longest_stream_s"] = ramp, tokens / FRAME_RATE
            figures["concurrency"].append(row)
            return row

        # the target first; then up while no stream stalls, or down until none does
        if clean(step(first)):
            for n in up:
                if not clean(step(n)):
                    break
        else:
            for n in down:
                if clean(step(n)):
                    break
        figures["concurrency"].sort(key=lambda r: r["n"])
        stalled = [r for r in figures["concurrency"] if not clean(r)]
        if stalled:
            # the control: the largest N that stalled through llmops, directly
            n = max(r["n"] for r in stalled)
            ramp, tokens = ramp_and_tokens(n, hold_s)
            sim.config(output_tokens=tokens)
            control = asyncio.run(
                concurrent_streams(
                    direct.url, direct.headers, n, ramp, hold_s, "direct", sim_proc.pid
                )
            )
            control["ramp_s"] = ramp
            figures["control"] = control
        figures["concurrency_seconds"] = round(time.perf_counter() - started, 1)
    clean_n = [r["n"] for r in figures["concurrency"] if clean(r)]
    figures["max_stall_free_streams"] = max(clean_n) if clean_n else 0
    figures["steps"] = [r["n"] for r in figures["concurrency"]]
    return figures


def command(quick: bool) -> str:
    return COMMAND + (" --quick" if quick else "")


def markdown(f: dict) -> str:
    ttft, frames = f["ttft"], f["frames"]
    n = f["rounds"] * f["requests_per_round_per_arm"]
    lines = [
        f"`{command(f['quick'])}`; llmops serves the `{WORKLOAD}` workload (gpt-4o-mini; on "
        "`/v1/chat/completions` as the key's default, with no X-Workload header, as the OpenAI "
        "SDK sends it) in "
        "production settings on SQLite, every stream with a prompt never sent before (no cache "
        "hits). The SSE arms are read by one httpx client with keep-alive connections, the "
        "websocket arm by a `websockets` client on one open socket (its per-socket message "
        "rate, 10 a second by default, lifted out of the way, as the per-key request rate "
        "is).",
        "",
        f"**Time to first token**: one stream at a time, {f['rounds']} interleaved rounds of "
        f"{f['requests_per_round_per_arm']} streams per arm ({n} per arm), the simulator with "
        f"no time to first token and no pacing (`max_tokens` {TTFT_MAX_TOKENS}). TTFT is from "
        "sending the request to the first frame with content. Added TTFT: per round, the arm's "
        "p50 minus the direct p50; median over rounds (range); added p99 over the whole run.",
        "",
        "| arm | TTFT p50 | p90 | p99 | added p50 (median over rounds, range) | added p99 |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in ttft.items():
        t = row["ttft_ms"]
        added = common.added_cells(row)
        lines.append(
            f"| {ARM_LABELS[name]} | {t['p50']:.2f} ms | {t['p90']:.2f} ms | {t['p99']:.2f} ms "
            f"| {added} |"
        )
    lines += [
        "",
        f"**Frames**: the simulator paced at {FRAME_RATE} frames (words) a second, one stream "
        f"at a time ({frames['direct']['streams']} per arm, interleaved). Gaps are between "
        "consecutive content frames as the client receives them.",
        "",
        "| arm | frames per stream | first frame | last frame | gap p50 | gap p99 | max gap | "
        "gaps < 5 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in frames.items():
        g = row["gap_ms"]
        lines.append(
            f"| {ARM_LABELS[name]} | {row['frames_per_stream']:g} | {row['first_frame_ms']} ms | "
            f"{row['last_frame_ms']} ms | {g['p50']:.1f} ms | {g['p99']:.1f} ms | "
            f"{g['max']:.1f} ms | {row['share_of_gaps_under_5ms']:.0%} |"
        )
    sse, direct = frames["llmops_sse"], frames["direct"]
    lines += [
        "",
        f"Not buffered: through llmops' SSE the first frame arrives after "
        f"{sse['first_frame_ms']} ms and the last after {sse['last_frame_ms']} ms (directly: "
        f"{direct['first_frame_ms']} and {direct['last_frame_ms']} ms), with the same "
        f"{1000 / FRAME_RATE:g} ms rhythm between frames (gap p50 {sse['gap_ms']['p50']:.1f} ms "
        f"against {direct['gap_ms']['p50']:.1f} ms directly); a buffering proxy would deliver "
        "them all at the end, in one burst.",
        "",
        f"**Concurrent streams**: N SSE streams at once through llmops' `/v1/chat/completions`, "
        f"paced at {FRAME_RATE} frames a second; they start {f['start_rate']} a second (the "
        "ramp), and each is given the frames (`max_tokens`) to end with the others, "
        f"{f['hold_s']:g} s after the last has started (the first, started a ramp earlier, is "
        f"the longest), so all N run together for {f['hold_s']:g} s and the step has no "
        "ramp-down of streams ending one by one. A stream **stalls** if two of its "
        f"frames arrive more than {STALL_MS:g} ms apart (a pause a reader notices), if a frame "
        f"arrives more than {STALL_MS:g} ms behind the pace the simulator sends at (frame k is "
        "due k/50 s after the first: a stream relayed slower than it is produced falls behind "
        f"without any single long gap), or if it fails. {search_text(f['search'])} "
        "*Peak concurrent*: the most streams between their first and last frame at one moment; "
        "*hold*: from the moment every stream had its first frame to the first stream's end "
        "(all N running, no new stream being admitted); a stream stalls *in the hold* if it has "
        f"a long gap there or falls more than {STALL_MS:g} ms further behind there; *server CPU "
        "per frame*: the server's CPU time (daphne's, or the simulator's for the control) "
        "during the hold over the frames the client received in it.",
        "",
        "| N | peak concurrent | failed | stalled | of which in the hold (its length) | gap p50 "
        "| gap p99 | max gap | most behind the pace | TTFT p50 | TTFT p99 | server CPU per frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def row_line(r: dict, label: str) -> str:
        g, t = r["gap_ms"] or {}, r["ttft_ms"] or {}
        hold = "—" if r["stalled_in_hold"] is None else f"{r['stalled_in_hold']} ({r['hold_s']} s)"
        cpu = "—" if r["server_us_per_frame"] is None else f"{r['server_us_per_frame']} µs"
        return (
            f"| {label} | {r['peak_concurrent']} | {r['failed']} | {r['stalled']} | {hold} | "
            f"{g.get('p50', '—')} ms | {g.get('p99', '—')} ms | {r['max_gap_ms']} ms | "
            f"{r['max_lag_ms']} ms | {t.get('p50', '—')} ms | {t.get('p99', '—')} ms | {cpu} |"
        )

    for r in f["concurrency"]:
        lines.append(row_line(r, str(r["n"])))
    control = f["control"]
    if control:
        lines.append(row_line(control, f"{control['n']}, simulator directly (control)"))
    else:
        lines += [
            "",
            "No step stalled, so no control ran: the client and the simulator kept up at every "
            "N tried, through llmops.",
        ]
    seen = [*f["concurrency"], control] if control else f["concurrency"]
    errors = sorted({e for r in seen for e in r["errors"]})
    if errors:
        lines += ["", "Errors seen: " + "; ".join(errors[:3])]
    if control and not clean(control):
        lines += [
            "",
            f"The control stalled too ({control['stalled']} of {control['n']} streams, "
            f"{control['failed']} failed): at N = {control['n']} the client and the simulator "
            "do not keep up on these 2 cores even without llmops between them, so the stalls "
            "of that step through llmops are not llmops' alone.",
        ]
    elif control and max(control["max_gap_ms"] or 0, control["max_lag_ms"] or 0) > STALL_MS / 2:
        worst = max(control["max_gap_ms"] or 0, control["max_lag_ms"] or 0)
        lines += [
            "",
            f"The control ran without a stall, but its worst stream came within "
            f"{STALL_MS - worst:.0f} ms of the bar ({worst:.0f} ms, a gap or behind the pace): "
            f"at N = {control['n']} the client and the simulator on these 2 cores are not far "
            "from what they can keep up with on their own.",
        ]
    added_sse = ttft["llmops_sse"]["added_p50_ms"]["median"]
    added_native = ttft["llmops_native"]["added_p50_ms"]["median"]
    added_ws = ttft["llmops_ws"]["added_p50_ms"]["median"]
    streams = f["max_stall_free_streams"]
    target = TARGET_ADDED_TTFT_MS
    lines += [
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| added TTFT p50 ≤ {target:g} ms, SSE (`/v1/chat/completions`) | {added_sse:.2f} ms | "
        f"{common.verdict(added_sse, target)} |",
        f"| added TTFT p50 ≤ {target:g} ms, SSE (`/api/v1/requests`) | {added_native:.2f} ms | "
        f"{common.verdict(added_native, target)} |",
        f"| added TTFT p50 ≤ {target:g} ms, websocket (`/ws/stream/`) | {added_ws:.2f} ms | "
        f"{common.verdict(added_ws, target)} |",
        f"| ≥ {TARGET_STREAMS} concurrent streams without a stall in one daphne process | "
        f"{streams_measured(f)} | {streams_verdict(f)} |",
    ]
    return "\n".join(lines + in_the_way(f, max(added_sse, added_native), added_ws, streams))


def streams_measured(f: dict) -> str:
    """The streams target's 'measured' cell: the largest N without a stall, and at the target."""
    at_target = next((r for r in f["concurrency"] if r["n"] == TARGET_STREAMS), None)
    best = f["max_stall_free_streams"]
    text = f"largest step without a stall: {best}" if best else "every step stalled"
    if at_target:
        text += (
            f"; at {TARGET_STREAMS}: {at_target['stalled']} stalled, {at_target['failed']} failed"
        )
    return text


def streams_verdict(f: dict) -> str:
    """Met only if the step at the target ran without a stall; missed if it (or a smaller step)
    stalled; not measured if this run did not reach the target and nothing stalled."""
    at_target = next((r for r in f["concurrency"] if r["n"] == TARGET_STREAMS), None)
    stalled = [r["n"] for r in f["concurrency"] if not clean(r)]
    if at_target and clean(at_target):
        return f"met (≥ {TARGET_STREAMS} streams)"
    if at_target:
        best = f["max_stall_free_streams"]
        verdict = common.verdict(best, TARGET_STREAMS, at_most=False, unit=" streams")
        control = f["control"]
        if control and control["n"] == TARGET_STREAMS and not clean(control):
            verdict += f" (the control stalled too at {TARGET_STREAMS}: not llmops' alone)"
        return verdict
    if stalled:
        return (
            f"**missed** (inferred): streams stalled already at {min(stalled)} "
            f"({TARGET_STREAMS} not tried in this run)"
        )
    return (
        f"not measured: this run went up to {max(f['steps'])} streams without a stall; "
        f"`{COMMAND}` tries {TARGET_STREAMS}"
    )


def search_text(search: dict) -> str:
    """How part 3 chose its steps, in words."""
    up = " and then ".join(str(n) for n in search["up"])
    down = " and then ".join(str(n) for n in search["down"])
    text = (
        f"The steps start at {search['first']} streams"
        + (f"; if none stalls, {up} (while none stalls)" if up else "")
        + (f"; if any stalls, {down}, down to the first step without a stall" if down else "")
        + " (the steps in between are not tried)."
    )
    if not search["up"] and search["first"] == TARGET_STREAMS:
        text += (
            f" No step goes above the target: at {2 * TARGET_STREAMS} streams the client and "
            "the simulator, on the same 2 cores, would need most of a core themselves."
        )
    elif not search["up"] and search["first"] < TARGET_STREAMS:
        text += f" A `--quick` run does not try the target's {TARGET_STREAMS}."
    return text


def in_the_way(f: dict, added_sse: float, added_ws: float, streams: int) -> list[str]:
    """What stands between llmops and the targets, from this run's own figures."""
    lines = []
    if max(added_sse, added_ws) > TARGET_ADDED_TTFT_MS:
        lines += [
            "",
            "**What stands in the way of the TTFT target**: the first token waits for "
            "admission, which runs before llmops calls the provider (API key, per-key rate "
            "limit, workload, model chain and prices, the budget hold, the request row: a "
            "unit of ORM statements on SQLite in llmops' database thread), and the simulator "
            "answers in about a millisecond, so what is added is llmops' own CPU time: daphne "
            f"spent {f['daphne_cpu_ms_per_short_stream']} ms of CPU per short stream in this "
            "part (admission, the stream, and completion after the last frame: ledger entries, "
            "settling the hold). M1 has the same path without streaming.",
        ]
    measured = [r for r in f["concurrency"] if r["server_us_per_frame"]]
    stalled = [r for r in f["concurrency"] if not clean(r)]
    if streams < TARGET_STREAMS and measured and stalled:
        first_bad = min(stalled, key=lambda r: r["n"])
        # the cost per frame where streams first stalled, else the lowest measured (the more
        # streams, the more frames each wake-up of the event loop handles, so the cost per
        # frame falls as the load rises)
        at = first_bad if first_bad["server_us_per_frame"] else None
        at = at or min(measured, key=lambda r: r["server_us_per_frame"])
        us = max(at["server_us_per_frame"], 1.0)
        relay_streams = 1e6 / us / FRAME_RATE
        if first_bad["stalled_in_hold"] is None:
            where = "before all of them were running"
        elif first_bad["stalled_in_hold"] == 0:
            where = "all of them while streams were still being admitted (none in the hold)"
        else:
            where = f"{first_bad['stalled_in_hold']} of them in the hold, with all N running"
        by_gap = first_bad["stalled_by_gap"]
        how = f"{by_gap} with a gap over {STALL_MS:g} ms" + (
            f", the others by falling behind the pace, up to {first_bad['max_lag_ms']:,.0f} ms"
            if by_gap < first_bad["stalled"]
            else f"; the most behind the pace was {first_bad['max_lag_ms']:,.0f} ms"
        )
        relay = (
            f"Relaying one frame cost daphne {us:g} µs of CPU (in the hold at N = {at['n']}), "
            "while producing it cost the simulator "
            f"{(f['control'] or {}).get('server_us_per_frame', '—')} µs (the control). One "
            "process, which runs Python on one core at a time, relays at most "
            f"≈ {1e6 / us:,.0f} frames a second at that cost, ≈ {relay_streams:.0f} streams at "
            f"{FRAME_RATE} frames a second, and it also admits each new stream "
            f"({f['daphne_cpu_ms_per_short_stream']} ms of CPU per short stream above). "
            f"At N = {first_bad['n']}, {first_bad['stalled']} streams stalled ({how}), {where}."
        )
        if relay_streams < first_bad["n"]:
            head = "CPU in the one daphne process. " + relay
        else:
            head = (
                "not the CPU of relaying frames alone. "
                + relay
                + " That is fewer streams than relaying alone would allow, so something else "
                "holds frames back for more than the stall bar"
                + (
                    ", and it comes with admitting and starting streams (none stalled once all "
                    "were running); this module measures where the stalls happen, not what "
                    "causes them (a profile of daphne during the ramp would tell)."
                    if first_bad["stalled_in_hold"] == 0
                    else "; this module measures where the stalls happen, not what causes them."
                )
            )
        lines += [
            "",
            f"**What stands in the way of the streams target**: {head} Each frame is read from "
            "the provider by httpx, parsed once (JSON, folded into the answer that is billed "
            "and recorded), relayed as the provider's own bytes through llmops' stream loop "
            "and Django's streaming response, and written by daphne (one write per frame).",
        ]
    return lines


def main() -> None:
    args = common.arguments(__doc__).parse_args()
    figures = measure(args.quick)
    common.write_result(
        args.json,
        id="M3",
        title="Streaming",
        command=command(args.quick),
        figures=figures,
        markdown=markdown(figures),
    )


if __name__ == "__main__":
    main()
