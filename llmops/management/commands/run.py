"""`make run`: prepare the database and start the whole stack in the foreground.

daphne (HTTP + websockets), one django-q2 cluster and the provider simulator run
as child processes, each in its own process group so that stopping this
command (Ctrl-C or SIGTERM) stops every process they started, workers included.

The simulator starts first: on the first run, the demo history (llmops/history.py) is
replayed through it before daphne and the worker start, so the billing pages have weeks
of figures on first open and no worker flushes the history's batches on today's clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from llmops import history
from llmops.demo import demo_seed
from llmops.env import Env

READY_TIMEOUT_S = 180
SIMULATOR_TIMEOUT_S = 30
STOP_GRACE_S = 10


class Command(BaseCommand):
    help = "Migrate, seed the demo and run daphne, a worker cluster and the provider simulator."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.LLMOPS_HOST, help="daphne bind address")
        parser.add_argument("--port", type=int, default=settings.LLMOPS_PORT)
        parser.add_argument("--sim-host", default=settings.LLMOPS_SIM_HOST)
        parser.add_argument("--sim-port", type=int, default=settings.LLMOPS_SIM_PORT)
        parser.add_argument(
            "--no-simulator",
            action="store_true",
            help="Do not start the simulator (providers point at LLMOPS_SIMULATOR_URL).",
        )
        parser.add_argument(
            "--no-history",
            action="store_true",
            help="Do not replay the demo history (same as LLMOPS_DEMO_HISTORY_DAYS=0).",
        )
        parser.add_argument(
            "--history-days",
            type=int,
            metavar="N",
            help="Days of demo history replayed on the first run (default: "
            f"LLMOPS_DEMO_HISTORY_DAYS, else {history.DEFAULT_DAYS}; 0 = none).",
        )
        parser.add_argument(
            "--history-per-day",
            type=int,
            metavar="N",
            help="About this many requests a day (default: LLMOPS_DEMO_HISTORY_PER_DAY, "
            f"else {history.DEFAULT_PER_DAY}).",
        )

    def handle(self, *args, **options):
        host, port = options["host"], options["port"]
        sim_host, sim_port = options["sim_host"], options["sim_port"]
        run_simulator = not options["no_simulator"]
        history_days, history_per_day = history_size(options, Env())

        self.stdout.write("Preparing: migrate, collectstatic, seed_demo …")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        credentials = self._local_credentials()
        simulator_url = (
            f"http://{_reachable(sim_host)}:{sim_port}"
            if run_simulator
            else settings.LLMOPS_SIMULATOR_URL
        )
        demo_seed(
            simulator_url=simulator_url,
            # The admin gets it when the seed creates the admin; a password changed in the
            # admin since stays (the seed never undoes an operator's edit).
            new_admin_password=credentials["admin_password"],
            api_key=credentials["api_key"],
        )

        manage = str(Path(settings.BASE_DIR) / "manage.py")
        simulator = [sys.executable, manage, "simulator", "--host", sim_host]
        simulator += ["--port", str(sim_port)]
        # Started once the simulator answers and the history is in place.
        commands = {
            "daphne": [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                host,
                "-p",
                str(port),
                *(
                    ["--proxy-headers"]
                    if getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
                    else []
                ),
                "llmops.asgi:application",
            ],
            "worker": [sys.executable, manage, "qcluster"],
        }

        stop_requested = False

        def request_stop(signum, frame):
            nonlocal stop_requested
            stop_requested = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        children: dict[str, subprocess.Popen] = {}
        exit_code = 0
        try:
            if run_simulator:
                children["simulator"] = _start(simulator)
                ready = self._wait_simulator(simulator_url, children, lambda: stop_requested)
                exit_code = 0 if ready or stop_requested else 1
            if exit_code == 0 and not stop_requested:
                self._history(
                    simulator_url,
                    days=history_days,
                    per_day=history_per_day,
                    stop=lambda: stop_requested,
                )
            if exit_code == 0 and not stop_requested:
                base = f"http://{_reachable(host)}:{port}"
                self.stdout.write(f"Starting {', '.join(commands)} … waiting for {base}/healthz")
                for name, command in commands.items():
                    children[name] = _start(command)
                exit_code = self._wait_ready(base, children, lambda: stop_requested)
            if exit_code == 0 and not stop_requested:
                self._banner(base, simulator_url if run_simulator else None, credentials)
                while not stop_requested:
                    dead = [n for n, p in children.items() if p.poll() is not None]
                    if dead:
                        self.stderr.write(f"{', '.join(dead)} exited; stopping everything.")
                        exit_code = 1
                        break
                    time.sleep(0.3)
        finally:
            self._stop(children)
        if exit_code:
            sys.exit(exit_code)

    def _wait_simulator(self, url: str, children: dict[str, subprocess.Popen], stopped) -> bool:
        self.stdout.write(f"Starting simulator … waiting for {url}/_sim/health")
        deadline = time.monotonic() + SIMULATOR_TIMEOUT_S
        while time.monotonic() < deadline and not stopped():
            if children["simulator"].poll() is not None:
                self.stderr.write("simulator exited during start-up.")
                return False
            if _answers(f"{url}/_sim/health"):
                return True
            time.sleep(0.2)
        if not stopped():
            self.stderr.write(f"The simulator did not answer within {SIMULATOR_TIMEOUT_S} s.")
        return False

    def _history(self, simulator_url: str, *, days: int, per_day: int, stop) -> None:
        """Replay the demo history once (the first run); later runs say it is there."""
        if days == 0:
            self.stdout.write("Demo history: off (--no-history / LLMOPS_DEMO_HISTORY_DAYS=0).")
            return
        if history.history_exists():
            report = history.history_report()
            self.stdout.write(
                f"Demo history: already in place ({report.requests} requests over "
                f"{report.days} days; it is replayed once, on the first run)."
            )
            return
        if not _answers(f"{simulator_url}/_sim/health"):
            self.stdout.write(f"Demo history: skipped, no simulator answers at {simulator_url}.")
            return
        self.stdout.write(
            f"Replaying {days} days of demo history through the simulator (once, on this first "
            "run; --no-history or LLMOPS_DEMO_HISTORY_DAYS=0 skips it) …"
        )
        try:
            report = history.history_replay(
                simulator_url=simulator_url, days=days, per_day=per_day, stop=stop
            )
        except Exception as exc:  # the history is a nicety: the stack starts without it
            self.stderr.write(f"Demo history failed, starting without it: {exc}")
            return
        if report.interrupted:
            self.stdout.write("Demo history: interrupted; what was replayed stays (not redone).")
            return
        self.stdout.write(f"Demo history: {report.summary()}, in {report.seconds:.0f} s.")

    def _local_credentials(self) -> dict[str, str]:
        """Random local admin password and demo API key, made once and kept in the data dir."""
        path = Path(settings.DATA_DIR) / "demo-credentials.json"
        if path.exists():
            return json.loads(path.read_text())
        credentials = {
            "admin_password": secrets.token_urlsafe(12),
            "api_key": "llm_demo_" + secrets.token_urlsafe(24),
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(credentials))
        return credentials

    def _wait_ready(self, base: str, children: dict[str, subprocess.Popen], stopped) -> int:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_report = None
        while time.monotonic() < deadline and not stopped():
            dead = [name for name, proc in children.items() if proc.poll() is not None]
            if dead:
                self.stderr.write(f"{', '.join(dead)} exited during start-up.")
                return 1
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:  # noqa: S310
                    if response.status == 200:
                        return 0
            except urllib.error.HTTPError as exc:
                last_report = exc.read().decode(errors="replace")
            except OSError:
                pass
            time.sleep(0.5)
        if not stopped():
            self.stderr.write(
                f"Not healthy after {READY_TIMEOUT_S} s; still running. Last report: {last_report}"
            )
        return 0

    def _banner(self, base: str, simulator_url: str | None, credentials: dict[str, str]) -> None:
        key = credentials["api_key"]
        lines = [
            "",
            self.style.SUCCESS("llmops is running"),
            f"  App        {base}/",
            f"  Playground {base}/playground/   (sign in with the admin login)",
            f"  Billing    {base}/billing/   (spend, ledger, savings, audit, budgets, calculator)",
            f"  Admin      {base}/admin/    login: admin / {credentials['admin_password']}"
            "   (as first set; a password changed in the admin stays)",
            f"  API docs   {base}/api/docs",
            f"  Health     {base}/healthz",
        ]
        if simulator_url:
            lines.append(
                f"  Simulator  {simulator_url}  (OpenAI {simulator_url}/openai/v1, "
                f"Anthropic {simulator_url}/anthropic, Azure {simulator_url}/azure/openai/v1, "
                f"Gemini {simulator_url}/gemini)"
            )
        lines += [
            f"  API key    {key}   (team acme, role admin)",
            f'  Try        curl -H "Authorization: Bearer {key}" {base}/api/v1/workloads',
            "Press Ctrl-C to stop.",
            "",
        ]
        self.stdout.write("\n".join(lines))

    def _stop(self, children: dict[str, subprocess.Popen]) -> None:
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Anything left in a child's group (a stuck worker, an orphan) is killed.
        for proc in children.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if children:
            self.stdout.write("Stopped " + ", ".join(children) + ".")


def history_size(options: dict, env: Env) -> tuple[int, int]:
    """(days, requests a day) of the demo history: the flags, else the environment, else the
    defaults; --no-history is zero days."""
    try:
        days = env.int("LLMOPS_DEMO_HISTORY_DAYS", history.DEFAULT_DAYS, min=0, max=366)
        per_day = env.int("LLMOPS_DEMO_HISTORY_PER_DAY", history.DEFAULT_PER_DAY, min=1, max=10_000)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from None
    if options.get("history_days") is not None:
        days = options["history_days"]
    if options.get("history_per_day") is not None:
        per_day = options["history_per_day"]
    if days < 0 or per_day < 1:
        raise CommandError("--history-days must be >= 0 and --history-per-day >= 1")
    return (0 if options.get("no_history") else days), per_day


def _start(command: list[str]) -> subprocess.Popen:
    # A new session per child: Ctrl-C reaches only us, and we stop each child's whole group
    # (qcluster forks its workers).
    return subprocess.Popen(command, start_new_session=True)  # noqa: S603


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own URL
            return response.status == 200
    except OSError:
        return False


def _reachable(host: str) -> str:
    """An address a local client can use for a bind address."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
