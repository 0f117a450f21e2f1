"""llmops.netwrite: twisted's TCP writes under daphne's asyncio reactor sent on the loop's next
turn. In a process of its own (a reactor is installed once per process, as daphne does): a
twisted server whose writes a plain socket client reads back, byte for byte and in order:
small writes coalesced into one send with no epoll registration, a body far above the socket's
buffer (a partial send, the rest through twisted's own path), a close after writes, and a
client that went away."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, socket, struct, sys, threading, time
    sys.path.insert(0, sys.argv[1])
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor
    asyncioreactor.install(loop)
    from twisted.internet import protocol, reactor

    from llmops import netwrite

    installed = netwrite.install()
    added = []
    add_writer = reactor.addWriter
    def counting(writer):
        added.append(writer)
        return add_writer(writer)
    reactor.addWriter = counting

    BIG = b"".join(b"%08d" % i for i in range(1_000_000))  # 8 MB, every offset distinct
    results = {}

    class Talk(protocol.Protocol):
        def dataReceived(self, data):
            what = data.strip().decode()
            before = len(added)
            if what == "small":
                for i in range(50):
                    self.transport.write(b"s%02d;" % i)
                self.transport.writeSequence([b"seq1;", b"seq2;"])
                results["small_add_writer"] = len(added) - before
                self.transport.write(b"END")
            elif what == "big":
                self.transport.write(BIG)
                self.transport.write(b"END")
            elif what == "close":
                self.transport.write(b"bye")
                self.transport.loseConnection()
            elif what == "gone":
                reactor.callLater(0.3, self.keep_writing, 0)

        def keep_writing(self, n):
            if not self.transport.connected or n > 200:
                results["gone_connected_after"] = self.transport.connected
                return
            self.transport.write(b"x" * 65536)
            reactor.callLater(0.005, self.keep_writing, n + 1)

        def connectionLost(self, reason):
            results.setdefault("lost", []).append(type(reason.value).__name__)

    factory = protocol.Factory.forProtocol(Talk)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1").getHost().port

    def recv_all(sock, until=None, slow=False):
        got = b""
        while True:
            if slow:
                time.sleep(0.002)
            chunk = sock.recv(65536)
            if not chunk:
                return got
            got += chunk
            if until and got.endswith(until):
                return got

    def client():
        try:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"small")
                results["small"] = recv_all(s, b"END").decode()
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                s.sendall(b"big")
                got = recv_all(s, b"END", slow=True)
                results["big_ok"] = got == BIG + b"END"
                results["big_len"] = len(got)
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"close")
                results["close"] = recv_all(s).decode()
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(b"gone")
            s.close()  # a reset: the server's writes must end in connectionLost, not a hang
            time.sleep(1.5)
        finally:
            reactor.callFromThread(reactor.stop)

    threading.Thread(target=client, daemon=True).start()
    reactor.run(installSignalHandlers=False)
    results["installed"] = installed
    results["add_writer_calls"] = len(added)
    print(json.dumps(results))
    """
)


def run_script() -> dict:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_twisteds_writes_arrive_whole_in_order_and_small_ones_without_epoll():
    results = run_script()

    assert results["installed"] is True
    expected = "".join(f"s{i:02d};" for i in range(50)) + "seq1;seq2;END"
    assert results["small"] == expected
    # Sent on the next turn of the loop: the reactor was never asked to watch the socket.
    assert results["small_add_writer"] == 0
    # 8 MB to a slow reader with a small buffer: the rest went through twisted's own path.
    assert results["big_ok"] is True, results["big_len"]
    assert results["add_writer_calls"] >= 1
    assert results["close"] == "bye"
    # The client that reset its connection: the writes ended with the connection lost.
    assert results["gone_connected_after"] in (0, False)
    assert len(results["lost"]) == 4


def test_outside_daphne_nothing_is_patched():
    """In a process without an installed reactor (the tests, a worker), install() patches
    nothing and installs no reactor."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); from llmops import netwrite; "
            "print(netwrite.install(), 'twisted.internet.reactor' in sys.modules)",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.split() == ["False", "False"], done.stderr
