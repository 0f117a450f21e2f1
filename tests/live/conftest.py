"""llmops itself on a real socket, as a client application meets it: daphne in a subprocess
with its own data directory (migrated and seeded with the demo), pointed at the session's
simulator. Tests talk to it over HTTP only, through the official SDK and the API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
API_KEY = "llm_live-test-key-0123456789abcdef"
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Llmops:
    base_url: str
    api_key: str
    data_dir: Path

    def api(self, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                **(headers or {}),
            },
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def request_of(self, completion_id: str) -> dict:
        """The llmops request behind an OpenAI completion id (chatcmpl-<request uuid hex>)."""
        request_id = uuid.UUID(completion_id.removeprefix("chatcmpl-"))
        status, body = self.api("GET", f"/api/v1/requests/{request_id}")
        assert status == 200, body
        return body

    def openai(self, workload: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.base_url}/v1",
            api_key=self.api_key,
            max_retries=0,
            default_headers={"X-Workload": workload} if workload else None,
        )


@pytest.fixture(scope="module")
def llmops(simulator_server, tmp_path_factory) -> Iterator[Llmops]:
    data_dir = tmp_path_factory.mktemp("llmops-live")
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LLMOPS_", "DATABASE_", "REDIS_"))
    }
    env.update(
        LLMOPS_DATA_DIR=str(data_dir),
        LLMOPS_CIRCUIT_FAILURES="2",
        LLMOPS_CIRCUIT_COOLDOWN="600",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    subprocess.run(
        [
            *manage,
            "seed_demo",
            "--simulator-url",
            simulator_server.base_url,
            "--api-key",
            API_KEY,
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    log = (data_dir / "daphne.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "llmops.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"{base_url}/healthz", timeout=5
            ):
                break
        except urllib.error.HTTPError:
            break  # it answers (503 while a worker cluster is missing is still "up")
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((data_dir / "daphne.log").read_text()) from None
            time.sleep(0.2)
    try:
        yield Llmops(base_url=base_url, api_key=API_KEY, data_dir=data_dir)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
