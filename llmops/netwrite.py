"""daphne's socket writes sent on the event loop's next turn, not after a round trip through epoll.

Twisted buffers every write and asks the reactor to watch the socket for writability
(`startWriting`: an epoll_ctl), sends when epoll says it may (a turn of the loop, through
twisted's logging and context wrappers) and stops watching (another epoll_ctl). Relaying a
stream, daphne writes once per token: at 100 concurrent streams that machinery was about a
tenth of daphne's busy samples (py-spy on M3's hold), besides the send itself.

Here a write to a plain TCP connection is buffered as twisted buffers it and sent by a
callback on the loop's next turn: one send for everything written to the connection in this
turn (a response's headers and body still leave together), and no epoll registration unless
the socket cannot take it all. Whatever is left over, and every error, goes back to twisted's
own path (`startWriting`): the reactor sends the rest when the socket drains and handles a
lost connection as it always does. TLS connections, and connections closing, keep twisted's
path untouched.

Installed by llmops.asgi in daphne's process only (the asyncio reactor daphne installs); in
any other process, and under any other reactor, nothing changes.
"""

from __future__ import annotations

import inspect
import logging
import sys

log = logging.getLogger(__name__)


def install() -> bool:
    """Patch twisted's TCP connections for the asyncio reactor daphne installed in this
    process. False (nothing patched) when there is none, or twisted's internals this relies
    on are not there."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None:
        return False  # not daphne: importing the reactor here would install the default one
    from twisted.internet import abstract, asyncioreactor, tcp

    if not isinstance(reactor, asyncioreactor.AsyncioSelectorReactor):
        return False
    loop, writers = reactor._asyncioEventloop, reactor._writers
    connection = tcp.Connection
    if getattr(connection, "_llmops_next_turn", False):
        return True
    # What the writes below mirror of twisted's own (FileDescriptor.write, twisted 24 to 26).
    needed = ("_writeDisconnected", "_maybePauseProducer", "dataBuffer", "doWrite", "TLS")
    mirrored = "self._tempDataBuffer.append" in inspect.getsource(abstract.FileDescriptor.write)
    if not mirrored or not all(hasattr(connection, name) for name in needed):
        log.warning("twisted's TCP connection changed: daphne's writes keep twisted's path")
        return False
    twisted_write, twisted_write_sequence = connection.write, connection.writeSequence

    def flush(conn) -> None:
        conn._llmops_flush_due = False
        if conn in writers or not conn.connected:
            return  # the reactor already waits to write, or the connection is gone
        try:
            why = conn.doWrite()
        except Exception:
            log.exception("writing to %s", conn)
            why = True
        # A partial send, a lost connection or a close: twisted's path from here on.
        if why or conn.dataBuffer or conn._tempDataLen:
            conn.startWriting()

    def buffered(conn) -> bool:
        """Whether this write is ours to send: a plain, open TCP connection."""
        return not (conn.TLS or conn.disconnecting or conn._writeDisconnecting)

    def due(conn) -> None:
        if conn in writers or conn.__dict__.get("_llmops_flush_due"):
            return
        conn._llmops_flush_due = True
        loop.call_soon(flush, conn)

    def write(self, data: bytes) -> None:
        if not buffered(self) or not isinstance(data, bytes):
            return twisted_write(self, data)  # TLS, closing, or twisted's TypeError
        if not data or not self.connected or self._writeDisconnected:
            return None
        self._tempDataBuffer.append(data)
        self._tempDataLen += len(data)
        self._maybePauseProducer()
        due(self)
        return None

    def write_sequence(self, iovec) -> None:
        if not buffered(self):
            return twisted_write_sequence(self, iovec)
        # One piece: doWrite joins the buffer before sending anyway.
        return write(self, b"".join(iovec))

    connection.write, connection.writeSequence = write, write_sequence
    connection._llmops_next_turn = True
    return True
