"""The simulator's aiohttp application and its entry point.

Deliberately free of Django: it starts in a fraction of a second and spends
its time on the wire, not on framework layers (no middlewares, no access log).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from aiohttp import web

from llmops.simulator.anthropic_api import AnthropicMessages
from llmops.simulator.anthropic_batches import AnthropicBatches
from llmops.simulator.control import Control
from llmops.simulator.openai_api import OpenAIChat
from llmops.simulator.openai_batches import OpenAIBatches
from llmops.simulator.openai_embeddings import OpenAIEmbeddings
from llmops.simulator.openai_files import OpenAIFiles
from llmops.simulator.openai_responses import OpenAIResponses
from llmops.simulator.state import SimState

# Batch input files go up to 200 MB and Anthropic batch bodies up to 256 MB;
# above this aiohttp itself answers 413.
CLIENT_MAX_SIZE = 300 * 1024 * 1024
STATE_KEY = web.AppKey("simulator_state", SimState)


def make_app(config: dict[str, Any] | None = None) -> web.Application:
    """A simulator app; `config` uses the `/_sim/config` format (demo timings when None)."""
    state = SimState(config)
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    app[STATE_KEY] = state
    openai_batches = OpenAIBatches(state)
    anthropic_batches = AnthropicBatches(state)
    app.router.add_routes(OpenAIChat(state).routes())
    app.router.add_routes(OpenAIEmbeddings(state).routes())
    app.router.add_routes(OpenAIResponses(state).routes())
    app.router.add_routes(OpenAIFiles(state, openai_batches.advance_all).routes())
    app.router.add_routes(openai_batches.routes())
    app.router.add_routes(AnthropicMessages(state).routes())
    app.router.add_routes(anthropic_batches.routes())
    app.router.add_routes(Control(state, openai_batches, anthropic_batches).routes())
    return app


def urls(base: str) -> str:
    return f"OpenAI {base}/openai/v1  Anthropic {base}/anthropic  control {base}/_sim"


async def serve(host: str, port: int, config: dict[str, Any] | None = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    runner = web.AppRunner(make_app(config), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
    print(
        f"Provider simulator on http://{shown}:{bound}  ({urls(f'http://{shown}:{bound}')})",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def run(host: str = "127.0.0.1", port: int = 8100, config: dict[str, Any] | None = None) -> None:
    asyncio.run(serve(host, port, config))
