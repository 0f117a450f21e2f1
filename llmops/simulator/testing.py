"""A real simulator on a real socket for tests, and a small client for its control API.

with running_simulator() as sim:
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sim", max_retries=0)
    azure = openai.OpenAI(base_url=sim.azure_base_url, api_key="unused",
                          default_headers={"api-key": "sim"}, max_retries=0)
    gemini = genai.Client(api_key="sim", http_options={"base_url": sim.gemini_base_url})
    sim.fault(provider="openai", status=429, count=1)
    sim.advance(30)
    sim.usage()["openai"]["gpt-4o-mini"]["realtime"]["output_tokens"]
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

from llmops.simulator.server import make_app
from llmops.simulator.state import INSTANT_CONFIG

START_TIMEOUT_S = 10


class SimulatorError(RuntimeError):
    """A control call the simulator refused; the message is the simulator's."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else body
        super().__init__(f"{status}: {message}")
        self.status = status
        self.body = body


class SimulatorHandle:
    """Where a running simulator listens, and its `/_sim` control API as methods."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.openai_base_url = f"{base_url}/openai/v1"
        self.anthropic_base_url = f"{base_url}/anthropic"
        self.azure_base_url = f"{base_url}/azure/openai/v1"
        # Entra ID's authority: tokens at {authority}/{tenant}/oauth2/v2.0/token.
        self.azure_authority = f"{base_url}/azure-login"
        self.gemini_base_url = f"{base_url}/gemini"
        self.gemini_openai_base_url = f"{base_url}/gemini/v1beta/openai"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - always our own http:// base URL
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        # The control API is on localhost: never route it through a proxy from the environment.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = raw.decode(errors="replace")
            raise SimulatorError(exc.code, detail) from None

    def config(self, **settings: Any) -> dict[str, Any]:
        """Change settings (`/_sim/config` keys: `tokens_per_s=50`, `model="gpt-4o", ...`)."""
        if settings:
            return self._call("POST", "/_sim/config", settings)
        return self._call("GET", "/_sim/config")

    def fault(self, **spec: Any) -> str:
        """Inject a fault (see `/_sim/faults`); returns its id."""
        return self._call("POST", "/_sim/faults", spec)["id"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sim/faults")["data"]

    def delete_fault(self, fault_id: str) -> None:
        self._call("DELETE", f"/_sim/faults/{fault_id}")

    def clear_faults(self) -> None:
        self._call("DELETE", "/_sim/faults")

    def advance(self, seconds: float) -> None:
        """Move the simulator clock forward (batches and fault windows follow it)."""
        self._call("POST", "/_sim/clock", {"advance_s": seconds})

    def now(self) -> float:
        return self._call("GET", "/_sim/clock")["now"]

    def usage(self) -> dict[str, Any]:
        """What the simulator would bill: {provider: {model: {mode: counts}}, "totals": counts}."""
        return self._call("GET", "/_sim/usage")

    def reset(self) -> None:
        """Back to the start config; forget faults, usage, files, batches, caches and clock."""
        self._call("POST", "/_sim/reset")


@contextmanager
def running_simulator(
    host: str = "127.0.0.1", port: int = 0, config: dict[str, Any] | None = None
) -> Iterator[SimulatorHandle]:
    """Run the simulator in a background thread with its own event loop.

    Port 0 picks a free port. The config defaults to instant timings (no time to
    first token, no pacing, batches finish at once), so tests steer time with
    `advance()` and slow things down with `config()` where they need to.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}
    app = make_app(INSTANT_CONFIG if config is None else config)

    async def start() -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        holder["port"] = runner.addresses[0][1]
        return runner

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            holder["runner"] = loop.run_until_complete(start())
        except BaseException as exc:
            holder["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(holder["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="llmops-simulator", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S):
        raise RuntimeError("the simulator did not start in time")
    if "error" in holder:
        raise RuntimeError(f"the simulator failed to start: {holder['error']}")
    try:
        yield SimulatorHandle(f"http://{host}:{holder['port']}")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=START_TIMEOUT_S)
