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
from llmops.simulator.azure import AZURE, AzureFiles, EntraLogin
from llmops.simulator.azure_batches import AzureBatches
from llmops.simulator.control import Control
from llmops.simulator.gemini_api import GEMINI_OPENAI, GeminiAPI
from llmops.simulator.gemini_batches import GeminiBatches
from llmops.simulator.gemini_files import GeminiFiles
from llmops.simulator.openai_batches import OpenAIBatches
from llmops.simulator.openai_chat import OpenAIChat
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
    azure_batches = AzureBatches(
        state,
        AZURE,
        batches=state.azure_batches,
        files=state.azure_files,
        responses=state.azure_responses,
    )
    gemini_batches = GeminiBatches(state)
    routes = [
        *OpenAIChat(state).routes(),
        *OpenAIEmbeddings(state).routes(),
        *OpenAIResponses(state).routes(),
        *OpenAIFiles(state, openai_batches.advance_all).routes(),
        *openai_batches.routes(),
        *AnthropicMessages(state).routes(),
        *anthropic_batches.routes(),
        # Azure OpenAI: OpenAI's handlers with the resource's own stores and rules.
        *OpenAIChat(state, AZURE).routes(),
        *OpenAIEmbeddings(state, AZURE).routes(),
        *OpenAIResponses(state, AZURE, state.azure_responses).routes(),
        *AzureFiles(state, azure_batches.advance_all, AZURE, state.azure_files).routes(),
        *azure_batches.routes(),
        *EntraLogin(state).routes(),
        # Gemini: the native API, and OpenAI's handlers with Gemini's catalogue.
        *GeminiAPI(state, {"batchGenerateContent": gemini_batches.create}).routes(),
        *GeminiFiles(state, gemini_batches.advance_all).routes(),
        *gemini_batches.routes(),
        *OpenAIChat(state, GEMINI_OPENAI).routes(),
        *OpenAIEmbeddings(state, GEMINI_OPENAI).routes(),
    ]
    app.router.add_routes(routes)
    books = [openai_batches, anthropic_batches, azure_batches, gemini_batches]
    app.router.add_routes(Control(state, books).routes())
    return app


def urls(base: str) -> str:
    return (
        f"OpenAI {base}/openai/v1  Anthropic {base}/anthropic  "
        f"Azure OpenAI {base}/azure/openai/v1 (Entra ID {base}/azure-login/<tenant>)  "
        f"Gemini {base}/gemini (OpenAI-compatible {base}/gemini/v1beta/openai)  "
        f"control {base}/_sim"
    )


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
