"""The LiteLLM proxy as a comparison arm: installed by the bench into a virtual environment of
its own (var/bench/litellm-venv, kept between runs), configured with one model pointing at the
simulator, run on a free port with telemetry, callbacks, the database and remote price lookups
off, so it never leaves this machine.

The version is pinned on purpose: litellm 1.82.7 and 1.82.8 (March 2026) were published to
PyPI by an attacker and stole credentials at import, and a later release was withdrawn for the
same reason. Raise LITELLM_SPEC only to a release that has been checked, and never to a range.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.common import VAR, free_port, stop, wait_http

LITELLM_SPEC = "litellm[proxy]==1.82.6"
VENV = VAR / "litellm-venv"
STAMP = VENV / ".installed"
INSTALL_LOG = VAR / "litellm-install.log"
INSTALL_TIMEOUT_S = 900


class LiteLLMUnavailable(RuntimeError):
    """The proxy could not be installed or started; the message says why."""


def python() -> Path:
    return VENV / "bin" / "python"


def installed_version() -> str | None:
    if not STAMP.exists() or not python().exists():
        return None
    out = subprocess.run(  # noqa: S603
        [str(python()), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip() or None


def install() -> str:
    """Install LITELLM_SPEC once (a stamp names the spec; a second run reuses the venv);
    returns the installed version, or raises LiteLLMUnavailable with pip's last words."""
    if STAMP.exists() and STAMP.read_text().strip() == LITELLM_SPEC and python().exists():
        return installed_version() or "unknown"
    VAR.mkdir(parents=True, exist_ok=True)
    print(f"installing {LITELLM_SPEC} into {VENV} (once) ...", file=sys.stderr, flush=True)
    with INSTALL_LOG.open("w") as log:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(VENV)],
            [str(python()), "-m", "pip", "install", "--disable-pip-version-check", LITELLM_SPEC],
        ]
        for step in steps:
            try:
                done = subprocess.run(  # noqa: S603
                    step,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise LiteLLMUnavailable(
                    f"`{' '.join(step[-3:])}` took longer than {INSTALL_TIMEOUT_S} s"
                ) from None
            if done.returncode != 0:
                tail = [
                    line[:300]
                    for line in INSTALL_LOG.read_text(errors="replace").splitlines()
                    if not line.startswith("WARNING: Location")
                ][-3:]
                raise LiteLLMUnavailable(
                    f"installing {LITELLM_SPEC} failed (exit {done.returncode}): "
                    + " / ".join(tail)
                )
    STAMP.write_text(LITELLM_SPEC + "\n")
    return installed_version() or "unknown"


CONFIG = """\
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}
      api_key: sim
litellm_settings:
  telemetry: false
  drop_params: true
  turn_off_message_logging: true
  callbacks: []
  success_callback: []
  failure_callback: []
general_settings:
  disable_spend_logs: true
  disable_reset_budget: true
"""


def proxy_env(home: Path) -> dict[str, str]:
    """A clean environment: nothing of ours (no keys, no DATABASE_URL) reaches the proxy."""
    return {
        "PATH": f"{VENV / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the price map from GitHub
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
        "PYTHONUNBUFFERED": "1",
    }


class Starting:
    """A proxy process that has been started: `ready()` waits until it answers."""

    def __init__(self, base_url: str, proc: subprocess.Popen, log_path: Path):
        self.base_url, self.proc, self.log_path = base_url, proc, log_path

    def ready(self) -> None:
        try:
            wait_http(f"{self.base_url}/health/liveliness", 120, self.proc)
        except RuntimeError as exc:
            tail = self.log_path.read_text(errors="replace")[-1500:]
            raise LiteLLMUnavailable(f"the proxy did not start: {exc}; log: {tail}") from None


@contextmanager
def starting_litellm(openai_base_url: str) -> Iterator[Starting]:
    """The proxy (uvicorn, one worker, as `litellm` starts it by default) serving model
    `gpt-4o-mini` from the simulator at `openai_base_url`, started but not waited for (it
    takes seconds to import: a caller can set up something else meanwhile, then `ready()`)."""
    if not python().exists():
        raise LiteLLMUnavailable("not installed")
    with tempfile.TemporaryDirectory(prefix="llmops-bench-litellm-") as home:
        config = Path(home) / "config.yaml"
        config.write_text(CONFIG.format(api_base=openai_base_url))
        port = free_port()
        log_path = Path(home) / "litellm.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # noqa: S603
                [
                    str(VENV / "bin" / "litellm"),
                    "--config",
                    str(config),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--num_workers",
                    "1",
                    "--telemetry",
                    "False",
                ],
                cwd=home,
                env=proxy_env(Path(home)),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                yield Starting(f"http://127.0.0.1:{port}", proc, log_path)
            finally:
                stop(proc)


@contextmanager
def running_litellm(openai_base_url: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The proxy as `starting_litellm` starts it, once it answers; yields (base URL, process)."""
    with starting_litellm(openai_base_url) as proxy:
        proxy.ready()
        yield proxy.base_url, proxy.proc


class Comparison:
    """LiteLLM as a benchmark's comparison arm, in three steps: installed (on creation, before
    anything runs: a first install takes minutes), started (`start`, before llmops is migrated
    and seeded: it takes seconds to import, so the two overlap), then waited for (`ready`). A
    step that fails records why in figures["litellm_error"] and leaves the arm out;
    figures["litellm_version"] names the release installed."""

    def __init__(self, figures: dict) -> None:
        self.figures = figures
        self.proxy: Starting | None = None
        try:
            figures["litellm_version"] = install()
        except LiteLLMUnavailable as exc:
            figures["litellm_error"] = str(exc)

    def start(self, running: ExitStack, openai_base_url: str) -> None:
        """The proxy started as `starting_litellm` starts it, stopped when `running` closes."""
        if self.figures.get("litellm_error") is not None:
            return
        try:
            self.proxy = running.enter_context(starting_litellm(openai_base_url))
        except LiteLLMUnavailable as exc:
            self.figures["litellm_error"] = str(exc)

    def ready(self) -> Starting | None:
        """The started proxy once it answers; None if it was not started or does not answer."""
        if self.proxy is None:
            return None
        try:
            self.proxy.ready()
        except LiteLLMUnavailable as exc:
            self.figures["litellm_error"] = str(exc)
            self.proxy = None
        return self.proxy
