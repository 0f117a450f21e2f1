"""llmops on a real socket, as a client application meets it: daphne in a subprocess with its
own data directory (migrated and seeded with the demo), pointed at a simulator. Used by the
live tests (tests/live/conftest.py) and the benchmarks (bench/)."""

from __future__ import annotations

import atexit
import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anthropic
import openai
import redis
import websockets.sync.client

ROOT = Path(__file__).resolve().parent.parent.parent
API_KEY = "llm_live-test-key-0123456789abcdef"
ADMIN_USERNAME = "admin"  # seed_demo's
ADMIN_PASSWORD = "live-test-admin-password"
START_TIMEOUT_S = 60

# A process with Django set up that forks a child per `Llmops.shell` call: each child is what a
# fresh `manage.py shell -c` is (its own process and database connection, the shell's
# namespace), less the ~5 s every manage.py spends importing Django and the SDKs first (the live
# batch tests run the worker's steps through it once a second). No connection is open at a fork.
SHELL_SERVER = r"""
import json, os, sys, traceback
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "llmops.settings")
import django
django.setup()
from django.core.management.commands import shell
from django.db import connections

def child(request):
    for fd, path in ((1, request["out"]), (2, request["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    status = 0
    try:
        exec(request["code"], {**vars(shell), **shell.Command().get_namespace(verbosity=0)})
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
        status = 1
    try:
        connections.close_all()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

replies = os.fdopen(os.dup(1), "w")
for line in sys.stdin:
    request = json.loads(line)
    connections.close_all()
    pid = os.fork()
    if pid == 0:
        child(request)
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
    replies.flush()
"""


class _ShellServer:
    def __init__(self, env: dict) -> None:
        self.lock = threading.Lock()
        self.dir = Path(tempfile.mkdtemp(prefix="llmops-shell-"))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SHELL_SERVER],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, code: str) -> subprocess.CompletedProcess | None:
        """The call's outcome as subprocess.run's; None while another call runs (then the
        caller starts a process of its own: concurrent calls stay concurrent)."""
        if not self.lock.acquire(blocking=False):
            return None
        try:
            out, err = self.dir / "out", self.dir / "err"
            request = {"code": code, "out": str(out), "err": str(err)}
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
            if not reply:
                raise RuntimeError(f"the shell server exited ({self.proc.wait()})")
            returncode = json.loads(reply)["returncode"]
            return subprocess.CompletedProcess(
                "shell",
                returncode,
                out.read_text(errors="replace"),
                err.read_text(errors="replace"),
            )
        finally:
            self.lock.release()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=20)
        for path in self.dir.iterdir():
            path.unlink()
        self.dir.rmdir()


_shell_servers: dict[tuple, _ShellServer] = {}


def _shell_server(env: dict) -> _ShellServer:
    key = tuple(sorted(env.items()))
    if key not in _shell_servers:
        _shell_servers[key] = _ShellServer(env)
    return _shell_servers[key]


def _shell_servers_close(env: dict | None = None) -> None:
    """The shell server of `env` (all of them when None)."""
    keys = list(_shell_servers) if env is None else [tuple(sorted(env.items()))]
    for key in keys:
        if server := _shell_servers.pop(key, None):
            server.close()


atexit.register(_shell_servers_close)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Llmops:
    base_url: str
    api_key: str
    data_dir: Path
    env: dict  # the server's environment: `manage.py` with it reads the server's database

    def api(
        self, method: str, path: str, body=None, headers=None, *, raw: bytes | None = None
    ) -> tuple[int, dict]:
        """(status, JSON body) of an API call; `raw` sends those bytes instead of `body`."""
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
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

    def defer(self, workload: str, n: int, *, text: str = "Review {i}: fake?") -> list[str]:
        """POST `n` requests to a deferrable workload through the native API; their ids (each
        must be answered 202, a ticket)."""
        ids = []
        for i in range(n):
            status, body = self.api(
                "POST",
                "/api/v1/requests",
                {
                    "workload": workload,
                    "messages": [{"role": "user", "content": text.format(i=i)}],
                    "max_tokens": 30,
                },
            )
            assert status == 202, body
            ids.append(body["id"])
        return ids

    def shell(self, code: str) -> str:
        """Run Python as `manage.py shell -c` does against the server's database (another
        process, as a worker is: forked from SHELL_SERVER); returns the last line it printed."""
        out = _shell_server(self.env).run(code) or subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", code],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        out.check_returncode()
        return (out.stdout.strip().splitlines() or [""])[-1]

    def request_of(self, answer) -> dict:
        """The llmops request behind an OpenAI answer: its x-request-id (the SDK's
        `_request_id`, or the header of a stream's response), or a batch line's
        chatcmpl-<request uuid hex>."""
        if isinstance(answer, str):
            request_id = uuid.UUID(answer.removeprefix("chatcmpl-"))
        else:
            request_id = answer._request_id
        status, body = self.api("GET", f"/api/v1/requests/{request_id}")
        assert status == 200, body
        return body

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1)

    def ws(self, path: str, *, key: str | None = API_KEY, origin: str | None = None, **kwargs):
        """A websocket client (websockets' sync one) on `path`, authenticated with `key`."""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(kwargs.pop("headers", {}))
        return websockets.sync.client.connect(
            f"{self.ws_url}{path}",
            additional_headers=headers,
            origin=origin,
            proxy=None,
            open_timeout=10,
            **kwargs,
        )

    def login(self, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD) -> str:
        """Log in through the login page as a browser would; returns the Cookie header."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(jar)
        )
        with opener.open(f"{self.base_url}/accounts/login/", timeout=30) as page:
            html = page.read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
        form = urllib.parse.urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": token}
        ).encode()
        login = urllib.request.Request(
            f"{self.base_url}/accounts/login/",
            data=form,
            headers={"Referer": f"{self.base_url}/accounts/login/"},
        )
        with opener.open(login, timeout=30) as response:
            assert response.url.endswith("/playground/"), response.url
        cookies = {c.name: c.value for c in jar}
        assert "sessionid" in cookies, cookies
        return "; ".join(f"{k}={v}" for k, v in cookies.items())

    def openai(self, workload: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.base_url}/v1",
            api_key=self.api_key,
            max_retries=0,
            default_headers={"X-Workload": workload} if workload else None,
        )

    def anthropic(self, workload: str | None = None) -> anthropic.Anthropic:
        """The anthropic SDK pointed at llmops (as ANTHROPIC_BASE_URL points Claude Code)."""
        return anthropic.Anthropic(
            base_url=self.base_url,
            api_key=self.api_key,
            max_retries=0,
            default_headers={"X-Workload": workload} if workload else None,
        )


# The environment variables llmops' settings read.
SETTINGS_PREFIXES = ("LLMOPS_", "DATABASE_", "REDIS_")


def _prepared_env(data_dir: Path, database_url: str | None, settings: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTINGS_PREFIXES)}
    env.update(
        {
            "LLMOPS_DATA_DIR": str(data_dir),
            "NO_PROXY": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
            # Tests confirm a provider's cancel by moving the simulator's clock, not by waiting.
            "LLMOPS_BATCH_CANCEL_WAIT_SECONDS": "0",
            **settings,
        }
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url := os.environ.get("REDIS_URL"):
        # Scaled mode: channel layer, cache and broker on Redis as well, in a database of its
        # own, so that the test process clearing its cache leaves the server's state alone.
        env["REDIS_URL"] = urllib.parse.urlsplit(redis_url)._replace(path="/1").geturl()
        # A fresh server starts with fresh state: no circuit or cache left by the last one.
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    return env


def _migrate_and_seed(env: dict, simulator_url: str) -> None:
    """Migrate the database of `env` and seed the demo into it, pointed at `simulator_url`."""
    # Both in one process: each manage.py spends seconds importing Django and the SDKs first.
    seed = [
        "seed_demo",
        "--simulator-url",
        simulator_url,
        "--api-key",
        API_KEY,
        "--admin-password",
        ADMIN_PASSWORD,
    ]
    code = (
        "import io; from django.core.management import call_command; "
        "call_command('migrate', verbosity=0); "
        f"call_command(*{seed!r}, stdout=io.StringIO())"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"migrate and seed_demo failed:\n{done.stdout}{done.stderr}"


# Migrated and seeded data directories, one per simulator and settings (the secret key and
# the encryption keys are in it: they decide what the seeded provider keys decrypt with).
# Every SQLite stack of a test session starts from a copy of one: migrating and seeding a
# fresh one takes 9-16 s here (migrate's ~3 s, a manage.py's imports), copying it a
# few milliseconds, and nearly every live test module starts a stack.
_seeded: dict[tuple, Path] = {}


def _seeded_copy(env: dict, simulator_url: str, data_dir: Path) -> None:
    """Fill the empty `data_dir` with a migrated, seeded SQLite database (and its cache) for
    `env`: what `_migrate_and_seed` would write there."""
    # What the settings are made of (not the rest of the environment: pytest names the test
    # running in it).
    key = (
        simulator_url,
        tuple(
            sorted(
                (name, value)
                for name, value in env.items()
                if name.startswith(SETTINGS_PREFIXES) and name != "LLMOPS_DATA_DIR"
            )
        ),
    )
    if key not in _seeded:
        template = Path(tempfile.mkdtemp(prefix="llmops-seeded-"))
        atexit.register(shutil.rmtree, template, ignore_errors=True)
        _migrate_and_seed({**env, "LLMOPS_DATA_DIR": str(template)}, simulator_url)
        _seeded[key] = template
    # The seeding process has exited: its write-ahead log is in the file (copied too if not).
    shutil.copytree(_seeded[key], data_dir, dirs_exist_ok=True)


@contextmanager
def serving(env: dict, log_path: Path) -> Iterator[str]:
    """daphne on a free port with `env` (a migrated, seeded database), until the block ends;
    yields its base URL. Asserts on exit that it logged no traceback."""
    port = free_port()
    log = log_path.open("wb")
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
                raise RuntimeError(log_path.read_text()) from None
            time.sleep(0.2)
    try:
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    # Whatever the clients saw, the server must not have crashed on anything.
    text = log_path.read_text(errors="replace")
    if "Traceback" in text:
        # From 2,000 characters before the first traceback (not from the log's tail, which a
        # negative start would give for a traceback near the top).
        start = max(0, text.index("Traceback") - 2000)
        raise AssertionError(f"the server logged a traceback:\n{text[start : start + 6000]}")


@contextmanager
def running_llmops(
    simulator_url: str, data_dir: Path, *, database_url: str | None = None, **settings: str
) -> Iterator[Llmops]:
    """Migrate and seed `data_dir` (a copy of the session's migrated, seeded SQLite database
    for this simulator and these settings) or `database_url` (an empty database of its own),
    start daphne on a free port, stop it on exit. `settings` are extra LLMOPS_* environment
    variables. More daphne processes on the same database: `serving(stack.env, log_path)`."""
    env = _prepared_env(data_dir, database_url, settings)
    if database_url:
        _migrate_and_seed(env, simulator_url)
    else:
        _seeded_copy(env, simulator_url, data_dir)
    try:
        with serving(env, data_dir / "daphne.log") as base_url:
            yield Llmops(base_url=base_url, api_key=API_KEY, data_dir=data_dir, env=env)
    finally:
        _shell_servers_close(env)
