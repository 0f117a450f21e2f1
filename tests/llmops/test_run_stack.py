"""`make run` as a new user sees it: the whole stack from a fresh data directory (with a small
demo history), then Ctrl-C."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import openai
import pytest
from django.core.management import CommandError

from llmops import history
from llmops.env import Env
from llmops.management.commands.run import history_size

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_with(marker: str) -> list[int]:
    """Pids whose environment contains `marker` (the children inherit our data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def stack(tmp_path):
    port, sim_port = free_port(), free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "DATABASE_", "REDIS_"))
    }
    env.update(
        LLMOPS_DATA_DIR=str(tmp_path),
        LLMOPS_PORT=str(port),
        LLMOPS_SIM_PORT=str(sim_port),
        # A day of history keeps the test quick; the default is four weeks.
        LLMOPS_DEMO_HISTORY_DAYS="1",
        LLMOPS_DEMO_HISTORY_PER_DAY="12",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    output = []
    marker = f"LLMOPS_DATA_DIR={tmp_path}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "run exited early:\n" + "".join(output)
                continue
            output.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        else:
            pytest.fail("stack not ready in 180 s:\n" + "".join(output))
        banner = "".join(output)
        yield {
            "proc": proc,
            "base": f"http://127.0.0.1:{port}",
            "sim": f"http://127.0.0.1:{sim_port}",
            "password": re.search(r"login: admin / (\S+)", banner).group(1),
            "api_key": re.search(r"API key\s+(\S+)", banner).group(1),
            "marker": marker,
            "output": banner,
            "ports": (port, sim_port),
        }
    finally:
        # A failed test must not leave the stack running: stop it as Ctrl-C does, then kill
        # whatever of ours survived (a SIGKILLed `run` would orphan its children).
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for pid in processes_with(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_run_brings_up_every_process_and_ctrl_c_stops_them_all(stack):
    base = stack["base"]

    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
        health = json.loads(response.read())
    assert response.status == 200
    assert health["status"] == "ok"
    assert health["workers"]["clusters"] == 1
    assert set(health["providers"]) == {"sim-openai", "sim-anthropic", "sim-azure", "sim-gemini"}
    assert all(check["ok"] for check in health["providers"].values())

    # The printed admin login works.
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    browser.open(f"{base}/admin/login/", timeout=10).read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    form = urllib.parse.urlencode(
        {
            "username": "admin",
            "password": stack["password"],
            "csrfmiddlewaretoken": csrf,
            "next": "/admin/",
        }
    ).encode()
    page = browser.open(f"{base}/admin/login/", data=form, timeout=10)
    assert page.url == f"{base}/admin/"
    assert "Workloads" in browser.open(f"{base}/admin/", timeout=10).read().decode()

    # The printed API key works.
    request = urllib.request.Request(
        f"{base}/api/v1/workloads", headers={"Authorization": f"Bearer {stack['api_key']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        slugs = {w["slug"] for w in json.loads(response.read())["results"]}
    assert slugs == {
        "product-search",
        "review-moderation",
        "product-descriptions",
        "ticket-summaries",
        "support-triage",
        "query-embeddings",
        "catalog-embeddings",
        "listing-translations",
        "log-summaries",
    }

    # The simulator started by the stack answers the official SDK.
    client = openai.OpenAI(base_url=f"{stack['sim']}/openai/v1", api_key="sim", max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert reply.usage.completion_tokens > 0

    # The demo history was replayed through the simulator before daphne and the worker started,
    # and its charges are in the ledger the API serves.
    output = stack["output"]
    assert (
        output.index("Starting simulator")
        < output.index("Demo history: ")
        < output.index("Starting daphne, worker")
    )
    request = urllib.request.Request(
        f"{base}/api/v1/ledger?limit=1", headers={"Authorization": f"Bearer {stack['api_key']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["count"] > 0

    assert len(processes_with(stack["marker"])) >= 4  # run, daphne, simulator, qcluster (+ workers)

    # Ctrl-C.
    stack["proc"].send_signal(signal.SIGINT)
    assert stack["proc"].wait(timeout=30) == 0
    time.sleep(0.5)
    assert processes_with(stack["marker"]) == []
    for port in stack["ports"]:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0


def test_history_size_comes_from_flags_then_environment_then_defaults():
    none: dict = {}
    assert history_size(none, Env({})) == (history.DEFAULT_DAYS, history.DEFAULT_PER_DAY)
    env = Env({"LLMOPS_DEMO_HISTORY_DAYS": "7", "LLMOPS_DEMO_HISTORY_PER_DAY": "20"})
    assert history_size(none, env) == (7, 20)
    assert history_size({"history_days": 3, "history_per_day": None}, env) == (3, 20)
    assert history_size({"no_history": True}, env) == (0, 20)
    assert history_size(none, Env({"LLMOPS_DEMO_HISTORY_DAYS": "0"}))[0] == 0


def test_a_malformed_history_size_is_refused_naming_the_variable():
    with pytest.raises(CommandError, match="LLMOPS_DEMO_HISTORY_DAYS"):
        history_size({}, Env({"LLMOPS_DEMO_HISTORY_DAYS": "many"}))
    with pytest.raises(CommandError, match="--history-days"):
        history_size({"history_days": -1}, Env({}))
