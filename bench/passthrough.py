"""The floor: the least a Python async proxy can add. An aiohttp server that forwards each POST
to the same path on an upstream (the simulator) over keep-alive connections and hands the
answer back, streamed bodies chunk by chunk as they arrive. No parsing, no auth, no
database: what is left is one more HTTP hop through a Python event loop.

    .venv/bin/python bench/passthrough.py --port 9000 --upstream http://127.0.0.1:8100
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

FORWARDED = ("Content-Type", "Authorization")


def make_app(upstream: str) -> web.Application:
    app = web.Application()

    async def open_session(app: web.Application):
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        app["session"] = aiohttp.ClientSession(
            upstream, connector=connector, timeout=aiohttp.ClientTimeout(total=600)
        )
        yield
        await app["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: request.headers[k] for k in FORWARDED if k in request.headers}
        async with app["session"].post(request.path_qs, data=body, headers=headers) as upstream:
            content_type = upstream.headers.get("Content-Type", "application/json")
            if content_type.startswith("text/event-stream"):
                response = web.StreamResponse(
                    status=upstream.status, headers={"Content-Type": content_type}
                )
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
            return web.Response(
                status=upstream.status,
                body=await upstream.read(),
                headers={"Content-Type": content_type},
            )

    app.cleanup_ctx.append(open_session)
    app.router.add_post("/{tail:.*}", forward)
    app.router.add_get("/healthz", lambda request: web.Response(text="ok"))
    return app


@contextmanager
def running_passthrough(upstream: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """The passthrough in its own process in front of `upstream`; yields (base URL, process)."""
    from bench.common import ROOT, free_port, stop, wait_http

    port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, str(Path(__file__)), "--port", str(port), "--upstream", upstream],
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz", 20, proc)
        yield base, proc
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    web.run_app(
        make_app(args.upstream.rstrip("/")),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()
