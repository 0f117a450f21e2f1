"""Helpers of the websocket security tests (tests/security/test_socket_*.py): a reader that
timestamps what a socket receives until it closes, keys and users made in the server's
database, the admin's revoke action and logout as a browser posts them, and the daphne
process's memory and CPU time read from /proc."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from websockets.exceptions import ConnectionClosed

from tests.live.stack import Llmops


@dataclass
class Reader:
    """Every message a socket receives, with time.monotonic() on arrival, read by a thread
    until the socket closes. Give it a socket entered as a context manager (see `opened`)."""

    ws: object
    messages: list[tuple[float, dict]] = field(default_factory=list)
    closed_at: float | None = None
    close_code: int | None = None

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                text = self.ws.recv()
                self.messages.append((time.monotonic(), json.loads(text)))
        except ConnectionClosed as exc:
            self.closed_at = time.monotonic()
            self.close_code = exc.rcvd.code if exc.rcvd else None

    def wait_closed(self, timeout: float) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def wait_for(self, kind: str, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, message in self.messages:
                if message["type"] == kind:
                    return message
            time.sleep(0.02)
        raise AssertionError(f"no {kind} message in {timeout} s: {self.messages[-5:]}")

    def after(self, moment: float) -> list[dict]:
        return [message for at, message in self.messages if at > moment]


def new_key(llmops: Llmops, name: str, team: str = "acme") -> tuple[int, str]:
    """A fresh API key of `team`, made in the server's database: (its id, the secret)."""
    return new_keys(llmops, [name], team)[0]


def new_keys(llmops: Llmops, names: list[str], team: str = "acme") -> list[tuple[int, str]]:
    out = llmops.shell(
        "from routing.models import Team; from routing.keys import api_key_create; "
        f"t = Team.objects.get(slug={team!r}); "
        f"print(' '.join(f'{{k.pk}} {{raw}}' for k, raw in "
        f"(api_key_create(team=t, name=n) for n in {names!r})))"
    )
    words = out.split()
    return [(int(words[i]), words[i + 1]) for i in range(0, len(words), 2)]


def new_user(llmops: Llmops, username: str, password: str, team: str = "acme") -> None:
    llmops.shell(
        "from django.contrib.auth.models import User; from routing.models import Team; "
        f"u = User.objects.create_user({username!r}, password={password!r}); "
        f"Team.objects.get(slug={team!r}).members.add(u); print(u.pk)"
    )


def cookie_value(cookie: str, name: str) -> str:
    return dict(part.split("=", 1) for part in cookie.split("; "))[name]


def post_form(llmops: Llmops, path: str, cookie: str, form: dict) -> int:
    """POST a form as the signed-in browser with `cookie` does (CSRF token included); the
    status of the answer, redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    body = urllib.parse.urlencode(
        {**form, "csrfmiddlewaretoken": cookie_value(cookie, "csrftoken")}, doseq=True
    ).encode()
    request = urllib.request.Request(
        f"{llmops.base_url}{path}",
        data=body,
        headers={"Cookie": cookie, "Referer": f"{llmops.base_url}{path}"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def admin_revoke(llmops: Llmops, cookie: str, key_id: int) -> None:
    """The admin's "Revoke selected API keys" action on one key, as the changelist posts it."""
    status = post_form(
        llmops,
        "/admin/routing/apikey/",
        cookie,
        {"action": "revoke", "_selected_action": str(key_id), "index": "0"},
    )
    assert status == 302, status


def daphne_pid(llmops: Llmops) -> int:
    """The pid of the daphne serving `llmops` (found by its port on the command line)."""
    port = urllib.parse.urlsplit(llmops.base_url).port
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daphne" in argv and str(port).encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no daphne on port {port}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def opened() -> Iterator[Callable]:
    """`open(socket)` enters a websockets connection until the block ends (websockets wants
    its sync connections used as context managers)."""
    with ExitStack() as stack:
        yield stack.enter_context
