"""M2: throughput at 16 concurrent clients: the server CPU llmops spends per request, side by
side with the LiteLLM proxy in the same run, both in front of the same simulator.

    .venv/bin/python bench/throughput.py [--quick] [--json OUT]

Closed loop: 16 clients (asyncio tasks sharing one httpx AsyncClient with keep-alive
connections) each send a request, wait for its answer and send the next, for a fixed time. Each
request is a non-streamed chat completion (`max_tokens` 8, model gpt-4o-mini) with a prompt
never sent before, so llmops' response cache never hits: to llmops' `POST /v1/chat/completions`
as the `product-search` workload (daphne in production settings, SQLite, the ledger and the
budgets on), and to LiteLLM's `/v1/chat/completions` (bench/litellm_proxy.py, one uvicorn
worker from its own virtual environment). The simulator, in a process of its own, answers at
once.

Each arm first gets a warm-up window (not measured), then the arms take turns, window by window
(llmops, LiteLLM, llmops, LiteLLM, ...), for several rounds, so drift on the machine hits both
alike. A window starts with no request in flight and ends when the last request sent before its
deadline has been answered (plus a short settle for work a server does after it answers), so
the CPU time measured in it belongs to the requests counted in it. Server CPU per request =
user + system CPU time (/proc/PID/stat) of the server process and its child processes (LiteLLM's
workers, if it has any) during the window / requests answered 200 in it; the rate per core it
implies is 1000 / CPU-ms per request. The simulator's and the client's CPU per request are
reported too. The figures are medians over rounds with their range; the target is llmops' CPU
per request at most half of LiteLLM's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path

import httpx2 as httpx  # the httpx API, as the openai SDK ships it

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.litellm_proxy import Comparison  # noqa: E402

COMMAND = ".venv/bin/python bench/throughput.py"
# acme's realtime workload (gpt-4o-mini first, response cache on), and the bench key's default:
# the requests name none, as the OpenAI SDKs do not.
WORKLOAD = "product-search"
MODEL = "gpt-4o-mini"
MAX_TOKENS = 8
CLIENTS = 16
TARGET_RATIO = 0.5  # llmops' server CPU per request at most this times LiteLLM's
SETTLE_S = 0.2  # after a window's last answer, before its CPU is read
ARM_LABELS = {"llmops": "llmops `/v1/chat/completions`", "litellm": "LiteLLM proxy"}
SERVER_NAMES = {"llmops": "daphne", "litellm": "LiteLLM (uvicorn)"}


class Arm:
    """One server: where to POST, with which headers, and the processes whose CPU is its own."""

    def __init__(self, name: str, url: str, headers: dict[str, str], pid: int):
        self.name, self.url, self.headers, self.pid = name, url, headers, pid


# --- CPU ------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it (a server's workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live descendants."""
    total = 0.0
    for each in descendants(pid):
        with contextlib.suppress(OSError):  # a worker that exited meanwhile
            total += common.cpu_seconds(each)
    return total


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


# --- the closed loop ------------------------------------------------------------------------


class Prompts:
    """Prompts never sent before: a counter shared by every arm and window of the run."""

    def __init__(self) -> None:
        self.serial = 0

    def next(self, arm: str) -> str:
        self.serial += 1
        return f"Bench question {self.serial} ({arm}, M2): is the kettle in stock?"


async def closed_loop(
    client: httpx.AsyncClient, arm: Arm, seconds: float, prompts: Prompts
) -> dict:
    """CLIENTS tasks, each sending its next request as soon as the previous one is answered,
    until `seconds` have passed; returns the latencies (ms) of the 200s, the errors and the
    window's wall time (from the first send to the last answer)."""
    latencies: list[float] = []
    errors: list[str] = []

    async def client_task() -> None:
        while time.perf_counter() < deadline:
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": prompts.next(arm.name)}],
                "max_tokens": MAX_TOKENS,
            }
            started = time.perf_counter()
            try:
                response = await client.post(arm.url, json=body, headers=arm.headers)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text[:200]}")
                elif not response.json()["choices"][0]["message"]["content"]:
                    errors.append(f"200 with an empty answer: {response.text[:200]}")
                else:
                    latencies.append(elapsed)
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(client_task() for _ in range(CLIENTS)))
    return {"latencies": latencies, "errors": errors, "wall_s": time.perf_counter() - start}


async def window(
    client: httpx.AsyncClient, arm: Arm, seconds: float, prompts: Prompts, sim_pid: int
) -> dict:
    """One measured window of one arm, with the CPU time of its server, the simulator and this
    client over it."""
    before = (tree_cpu_seconds(arm.pid), common.cpu_seconds(sim_pid), own_cpu_seconds())
    result = await closed_loop(client, arm, seconds, prompts)
    client_cpu = own_cpu_seconds() - before[2]  # before the settle: the client is done
    await asyncio.sleep(SETTLE_S)
    server_cpu = tree_cpu_seconds(arm.pid) - before[0]
    sim_cpu = common.cpu_seconds(sim_pid) - before[1]
    done = len(result["latencies"])
    per = 1000 / max(1, done)
    return {
        "completed": done,
        "errors": len(result["errors"]),
        "error_examples": result["errors"][:3],
        "wall_s": round(result["wall_s"], 2),
        "achieved_per_s": round(done / result["wall_s"], 1),
        "server_cpu_s": round(server_cpu, 3),
        "server_cores_busy": round(server_cpu / result["wall_s"], 2),
        "server_cpu_ms_per_request": round(server_cpu * per, 2),
        "simulator_cpu_ms_per_request": round(sim_cpu * per, 2),
        "client_cpu_ms_per_request": round(client_cpu * per, 2),
        "latencies": result["latencies"],
    }


async def run_rounds(
    arms: list[Arm], rounds: int, seconds: float, warmup_s: float, sim_pid: int
) -> dict[str, list[dict]]:
    """A warm-up window per arm, then `rounds` rounds of one window per arm, arms alternating."""
    prompts = Prompts()
    limits = httpx.Limits(
        max_connections=CLIENTS * len(arms), max_keepalive_connections=CLIENTS * len(arms)
    )
    windows: dict[str, list[dict]] = {arm.name: [] for arm in arms}
    async with httpx.AsyncClient(timeout=30, limits=limits, trust_env=False) as client:
        for arm in arms:  # connections, imports, caches, the database's pages
            warm = await closed_loop(client, arm, warmup_s, prompts)
            if not warm["latencies"]:
                raise RuntimeError(f"{arm.name}: no 200 in the warm-up: {warm['errors'][:3]}")
        for _ in range(rounds):
            for arm in arms:
                windows[arm.name].append(await window(client, arm, seconds, prompts, sim_pid))
    return windows


# --- figures --------------------------------------------------------------------------------


def analyse(windows: list[dict]) -> dict:
    """An arm's figures: totals, pooled latencies, and per-window figures as median and range."""
    pooled = [ms for w in windows for ms in w["latencies"]]
    completed = sum(w["completed"] for w in windows)
    cpu_ms = common.spread([w["server_cpu_ms_per_request"] for w in windows])
    return {
        "completed": completed,
        "errors": sum(w["errors"] for w in windows),
        "error_examples": [e for w in windows for e in w["error_examples"]][:3],
        "seconds": round(sum(w["wall_s"] for w in windows), 1),
        "latency_ms": common.summary(pooled),
        "achieved_per_s": common.spread([w["achieved_per_s"] for w in windows], 1),
        "server_cpu_ms_per_request": cpu_ms,
        "server_cpu_ms_per_request_pooled": round(
            1000 * sum(w["server_cpu_s"] for w in windows) / max(1, completed), 2
        ),
        "server_cores_busy": common.spread([w["server_cores_busy"] for w in windows]),
        "requests_per_s_per_core": round(1000 / cpu_ms["median"], 1) if cpu_ms["median"] else None,
        "simulator_cpu_ms_per_request": common.spread(
            [w["simulator_cpu_ms_per_request"] for w in windows]
        ),
        "client_cpu_ms_per_request": common.spread(
            [w["client_cpu_ms_per_request"] for w in windows]
        ),
        "windows": [{k: v for k, v in w.items() if k != "latencies"} for w in windows],
    }


def measure(rounds: int, seconds: float, warmup_s: float) -> dict:
    figures: dict = {
        "clients": CLIENTS,
        "rounds": rounds,
        "window_seconds": seconds,
        "warmup_seconds": warmup_s,
        "max_tokens": MAX_TOKENS,
        "workload": WORKLOAD,
        "settle_seconds": SETTLE_S,
        "litellm_error": None,
    }
    comparison = Comparison(figures)
    with contextlib.ExitStack() as running:
        sim, sim_proc = running.enter_context(common.simulator_process(output_tokens=MAX_TOKENS))
        comparison.start(running, sim.openai_base_url)
        stack, daphne = running.enter_context(
            common.llmops_stack(sim.base_url, prefix="llmops-bench-m2-")
        )
        arms = [
            Arm(
                "llmops",
                f"{stack.base_url}/v1/chat/completions",
                {"Authorization": f"Bearer {stack.api_key}"},
                daphne,
            )
        ]
        if (proxy := comparison.ready()) is not None:
            arms.append(
                Arm(
                    "litellm",
                    f"{proxy.base_url}/v1/chat/completions",
                    {"Authorization": "x"},
                    proxy.proc.pid,
                )
            )
            figures["litellm_processes"] = len(descendants(proxy.proc.pid))
        wall = time.perf_counter()
        windows = asyncio.run(run_rounds(arms, rounds, seconds, warmup_s, sim_proc.pid))
        figures["seconds"] = round(time.perf_counter() - wall, 1)
    figures["arms"] = {name: analyse(w) for name, w in windows.items()}
    figures["ratio_to_litellm"] = None
    if "litellm" in windows:
        llm, lite = windows["llmops"], windows["litellm"]
        figures["ratio_to_litellm"] = {
            "median": round(
                figures["arms"]["llmops"]["server_cpu_ms_per_request"]["median"]
                / figures["arms"]["litellm"]["server_cpu_ms_per_request"]["median"],
                2,
            ),
            # each llmops window against the LiteLLM window right after it
            "per_round": common.spread(
                [
                    a["server_cpu_ms_per_request"] / b["server_cpu_ms_per_request"]
                    for a, b in zip(llm, lite, strict=True)
                ]
            ),
        }
    return figures


# --- the section ----------------------------------------------------------------------------


def markdown(f: dict) -> str:
    arms = f["arms"]
    lines = [
        f"`{COMMAND}`: closed loop, {f['clients']} concurrent clients (asyncio tasks sharing one "
        "httpx client with keep-alive connections), each sending its next request as soon as "
        "the previous one is answered. Each request is a non-streamed chat completion "
        f"(`max_tokens` {f['max_tokens']}, model gpt-4o-mini) with a prompt never sent before, "
        "so llmops' response cache never hits; llmops serves it as the "
        f"`{f['workload']}` workload (the key's default: no X-Workload header, as the OpenAI "
        "SDK sends it; daphne in production settings, SQLite, the ledger and "
        "the budgets on). The simulator, in a process of its own, answers at once. After a "
        f"{f['warmup_seconds']:g} s warm-up per arm, {f['rounds']} rounds of one "
        f"{f['window_seconds']:g} s window per arm, the arms alternating window by window. A "
        "window starts with no request in flight and ends when its last request is answered; "
        "the server CPU of a window (user + system time of the server process and its child "
        f"processes, /proc, read {f['settle_seconds']:g} s after that last answer) is divided "
        "by the requests it answered 200. Figures per window are medians over the rounds "
        "(range in brackets); latencies are over all of an arm's requests. Client, simulator "
        "and servers share the machine's cores, so the rates are lower bounds of a server's "
        "own; CPU per request is each process's own.",
        "",
        "| arm | requests | errors | achieved req/s | p50 | p99 | server CPU-ms/request | "
        "server cores busy | requests/s per core | simulator CPU-ms/request | "
        "client CPU-ms/request |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        lat = a["latency_ms"]
        lines.append(
            f"| {ARM_LABELS[name]} | {a['completed']:,} | {a['errors']} | "
            f"{common.fmt_spread(a['achieved_per_s'], unit='')} | {lat['p50']:.1f} ms | "
            f"{lat['p99']:.1f} ms | **{common.fmt_spread(a['server_cpu_ms_per_request'], '', 2)}**"
            f" | {common.fmt_spread(a['server_cores_busy'], '', 2)} | "
            f"**{a['requests_per_s_per_core']}** | "
            f"{common.fmt_spread(a['simulator_cpu_ms_per_request'], '', 2)} | "
            f"{common.fmt_spread(a['client_cpu_ms_per_request'], '', 2)} |"
        )
    lines.append("")
    for name, a in arms.items():
        if a["errors"]:
            lines.append(
                f"{ARM_LABELS[name]}: {a['errors']} requests not answered 200, e.g. "
                + "; ".join(f"`{e}`" for e in a["error_examples"])
                + "."
            )
            lines.append("")
    lines.append(
        "*Requests/s per core* is 1000 / the server's median CPU-ms per request: what one core "
        "fully given to that server would serve. *Server cores busy* is its CPU time over the "
        "window's wall time."
    )
    lines.append("")
    if f["litellm_error"]:
        lines += [
            f"**LiteLLM arm missing**: {f['litellm_error']}. The ratio to LiteLLM could not be "
            "measured in this run.",
        ]
        return "\n".join(lines)
    n = f.get("litellm_processes", 1)
    processes = "one process" if n == 1 else f"{n} processes"
    lines += [
        f"LiteLLM {f.get('litellm_version')} runs as `litellm --config ... --num_workers 1` "
        f"(uvicorn, one worker, its default: {processes}, all counted) from its own virtual "
        "environment "
        "(`var/bench/litellm-venv`), with one model `openai/gpt-4o-mini` whose `api_base` is the "
        "simulator; telemetry, callbacks, spend logs and the database off, the model price map "
        "read locally.",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
    ]
    ratio = f["ratio_to_litellm"]
    ours = arms["llmops"]["server_cpu_ms_per_request"]["median"]
    lite = arms["litellm"]["server_cpu_ms_per_request"]["median"]
    lines.append(
        f"| llmops server CPU per request at {f['clients']} clients ≤ {TARGET_RATIO:g}x "
        f"LiteLLM's | {ratio['median']:.2f}x ({ours:.2f} ms against "
        f"{lite:.2f} ms; per round {ratio['per_round']['min']:.2f}x to "
        f"{ratio['per_round']['max']:.2f}x), i.e. {arms['llmops']['requests_per_s_per_core']} "
        f"against {arms['litellm']['requests_per_s_per_core']} requests/s per core | "
        f"{common.verdict(ratio['median'], TARGET_RATIO, unit='x')} |"
    )
    return "\n".join(lines + in_the_way(f))


def in_the_way(f: dict) -> list[str]:
    """What stands between llmops and the target, from this run's own figures."""
    ratio = f["ratio_to_litellm"]
    if ratio is None or ratio["median"] <= TARGET_RATIO:
        return []
    llm, lite = f["arms"]["llmops"], f["arms"]["litellm"]
    ours = llm["server_cpu_ms_per_request"]["median"]
    theirs = lite["server_cpu_ms_per_request"]["median"]
    needed = TARGET_RATIO * theirs
    return [
        "",
        f"**What stands in the way**: daphne spent {ours:.2f} ms of CPU per request here and "
        f"LiteLLM {theirs:.2f} ms, so one core serves about {llm['requests_per_s_per_core']} "
        f"requests/s of llmops against {lite['requests_per_s_per_core']} of LiteLLM; the target "
        f"needs at most {needed:.2f} ms, {ours - needed:.2f} ms less per request. It is the "
        "same serving path as M1's: llmops writes the request, its budget hold and its ledger "
        "entry to the database (14 SQL statements in two transactions, in its database "
        "thread: one on SQLite, LLMOPS_DB_THREADS) before it answers, besides parsing and "
        "validating the request, the outbound "
        "call, JSON and daphne; LiteLLM, with spend logs and the database off, writes nothing. "
        "Each llmops request pays its own two commits and two hops to that thread and back, "
        "however many are in flight. The profile section below "
        "(`bench/profile.py`) shows where daphne's CPU goes: by area of the serving path, and "
        "(where Linux's perf is installed) by layer, where most of llmops' CPU, as of "
        "LiteLLM's, is the Python interpreter and the database engine a small part.",
    ]


def main() -> None:
    args = common.arguments(__doc__).parse_args()
    # 4 rounds of 8 s per arm: about a minute of windows (~75 s with start-up and warm-ups)
    rounds, seconds, warmup_s = (2, 2.0, 1.0) if args.quick else (4, 8.0, 3.0)
    figures = measure(rounds, seconds, warmup_s)
    common.write_result(
        args.json,
        id="M2",
        title="Throughput at 16 concurrent clients",
        command=COMMAND,
        figures=figures,
        markdown=markdown(figures),
    )


if __name__ == "__main__":
    main()
