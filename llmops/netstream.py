"""httpcore's network backend on asyncio's own transports, for the outbound HTTP clients.

httpcore's default backend on asyncio is anyio's socket stream. To read, it resumes the
transport, waits, and pauses it again, so every chunk received costs two epoll registrations.
Each read also runs inside an anyio cancel scope for its timeout. A relayed stream reads once
per token: in daphne at 200 concurrent streams, anyio's read path was 27% of the process's busy
samples (bench/profile.py on M3). Here the transport keeps reading into a buffer, and pauses
only when the reader falls a megabyte behind. A read whose data is already buffered returns at
once, and a read that must wait moves the due time of one timer per connection (armed once,
not once per read).

The errors are httpcore's own, as its anyio backend raises them: ConnectError, ConnectTimeout,
ReadError, ReadTimeout, WriteError, WriteTimeout. End of stream reads as b"".
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import httpcore2

# The reader this far behind: the provider waits (TCP's window) until it catches up.
HIGH_WATER = 1 << 20
LOW_WATER = HIGH_WATER // 4


class _Protocol(asyncio.Protocol):
    """Received bytes buffered for the stream's reads; the state of the connection."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.closed = False  # end of stream, or the connection lost
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.reader: asyncio.Future | None = None
        self.drain: asyncio.Future | None = None
        # Per slot ("reader", "drain"): the one timer its waits' timeouts share.
        self.deadlines: dict[str, MovingDeadline] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake_reader()
        return False  # the transport closes itself

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.error = exc
        self._wake_reader()
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)
        self.timers_cancel()

    def timers_cancel(self) -> None:
        """A pending timer holds the protocol (and its buffer) until it fires: not for a
        closed connection's read timeout of minutes."""
        for deadline in self.deadlines.values():
            deadline.close()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def _wake_reader(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.set_result(None)


class MovingDeadline:
    """One timer for a series of waits, each to be done by its own due time (never earlier
    than the one before). A relayed stream waits once per token: a timer per wait (a heap push
    and a cancel each) was several per cent of daphne's CPU per frame at 100 streams
    (bench/streaming.py, py-spy). Here a wait only moves the due time; the timer, armed when
    none is, fires at the time it was given and, if the due time has moved on since, re-arms
    for it. `expire()` is called on the loop when a wait outlives its due time."""

    __slots__ = ("due", "expire", "handle", "loop", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, expire: Callable[[], None]) -> None:
        self.loop, self.expire = loop, expire
        self.due = 0.0
        self.waiting = False
        self.handle: asyncio.TimerHandle | None = None

    def start(self, due: float) -> None:
        """A wait begins, to be over by `due` (the loop's time)."""
        self.due, self.waiting = due, True
        if self.handle is None:
            self.handle = self.loop.call_at(due, self._fire)

    def stop(self) -> None:
        """The wait is over (the timer, when it fires, finds nothing to time)."""
        self.waiting = False

    def _fire(self) -> None:
        self.handle = None
        if not self.waiting:
            return  # armed again by the next wait
        if self.loop.time() < self.due:  # this wait began after the timer was armed
            self.handle = self.loop.call_at(self.due, self._fire)
            return
        self.waiting = False
        self.expire()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None


async def _wait(protocol: _Protocol, slot: str, timeout: float | None, error: type, message: str):
    """Wait for the protocol to wake `slot` ("reader" or "drain"), error(message) after
    `timeout` (the slot's MovingDeadline)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    setattr(protocol, slot, waiter)
    deadline = None
    if timeout is not None:
        deadline = protocol.deadlines.get(slot)
        if deadline is None:
            expire = functools.partial(_expire, protocol, slot, error, message)
            deadline = protocol.deadlines[slot] = MovingDeadline(loop, expire)
        deadline.start(loop.time() + timeout)
    try:
        await waiter
    finally:
        setattr(protocol, slot, None)
        if deadline is not None:
            deadline.stop()


def _expire(protocol: _Protocol, slot: str, error: type, message: str) -> None:
    waiter = getattr(protocol, slot)
    if waiter is not None and not waiter.done():
        waiter.set_exception(error(message))


class _Stream(httpcore2.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.chunks and not protocol.closed:
            await _wait(protocol, "reader", timeout, httpcore2.ReadTimeout, "read timed out")
        if not protocol.chunks:
            if protocol.error is not None:
                raise httpcore2.ReadError(str(protocol.error) or repr(protocol.error))
            return b""
        chunk = protocol.chunks.popleft()
        if len(chunk) > max_bytes:
            protocol.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        protocol.size -= len(chunk)
        if protocol.reading_paused and protocol.size < LOW_WATER and not protocol.closed:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return chunk

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if protocol.closed or self._transport.is_closing():
            raise httpcore2.WriteError("the connection is closed")
        self._transport.write(buffer)
        if protocol.writing_paused:
            await _wait(protocol, "drain", timeout, httpcore2.WriteTimeout, "write timed out")
            if protocol.closed:
                raise httpcore2.WriteError("the connection closed while writing")

    async def aclose(self) -> None:
        self._protocol.timers_cancel()
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError as exc:
            self._transport.close()
            raise httpcore2.ConnectTimeout("TLS handshake timed out") from exc
        except (OSError, ssl.SSLError, EOFError) as exc:
            self._transport.close()
            raise httpcore2.ConnectError(str(exc) or repr(exc)) from exc
        if transport is None:  # the connection closed during the handshake
            raise httpcore2.ConnectError("the connection closed during the TLS handshake")
        self._protocol.transport = transport
        return _Stream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "is_readable":
            # What httpcore asks of an idle pooled connection (did the server close it, or
            # send something unasked?): the socket's bytes are in the buffer already.
            return bool(self._protocol.chunks) or self._protocol.closed
        return None


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Protocol,
                    host,
                    port,
                    local_addr=(local_address, 0) if local_address else None,
                )
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc) or repr(exc)) from exc
        # asyncio sets TCP_NODELAY on TCP transports, as anyio does.
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        return _Stream(transport, protocol)

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore2.ConnectError("unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
