"""llmops.netstream, httpcore's backend on asyncio's transports, against a local HTTPS server
(a certificate made here): TLS, a body far above the buffer's high-water mark, keep-alive reuse
and a server that drops an idle connection, and httpcore's errors for timeouts and refusals."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl

import httpcore2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from llmops.netstream import HIGH_WATER, AsyncioBackend

BIG = 3 * HIGH_WATER + 12_345  # the transport must pause and resume reading to deliver it


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return folder / "cert.pem", folder / "key.pem"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive HTTP/1.1: /small, /big, /slow (answers after 2 s), /drop (answers, then
    closes the connection without saying so), /trickle (six pieces 60 ms apart, then nothing
    for 2 s of the body it announced)."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path == b"/trickle":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
                for _ in range(6):
                    writer.write(b"piece")
                    await writer.drain()
                    await asyncio.sleep(0.06)
                await asyncio.sleep(2)
                break
            if path == b"/slow":
                await asyncio.sleep(2)
            body = b"x" * BIG if path == b"/big" else b"hello " + path
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
            if path == b"/drop":
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


def serve_and(certificate, client) -> None:
    """Run `client(pool, base_url)` against the HTTPS server, on one event loop."""
    cert, key = certificate

    async def main() -> None:
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        client_tls = ssl.create_default_context(cafile=str(cert))
        async with (
            server,
            httpcore2.AsyncConnectionPool(
                ssl_context=client_tls, network_backend=AsyncioBackend()
            ) as pool,
        ):
            await client(pool, f"https://localhost:{port}")

    asyncio.run(main())


def test_https_answers_whole_and_the_connection_is_reused(certificate):
    async def client(pool, base) -> None:
        small = await pool.request("GET", f"{base}/small")
        assert (small.status, small.content) == (200, b"hello /small")
        async with pool.stream("GET", f"{base}/big") as big:
            # A reader slower than the server: the buffer passes its high-water mark, the
            # transport pauses, and only resuming it delivers the rest.
            await asyncio.sleep(0.3)
            body = b"".join([chunk async for chunk in big.aiter_stream()])
        assert big.status == 200 and body == b"x" * BIG
        assert len(pool.connections) == 1  # the same keep-alive connection served both
        assert pool.connections[0].info().startswith("'https://localhost")

    serve_and(certificate, client)


def test_an_idle_connection_the_server_dropped_is_not_reused(certificate):
    async def client(pool, base) -> None:
        dropped = await pool.request("GET", f"{base}/drop")
        assert dropped.content == b"hello /drop"
        await asyncio.sleep(0.2)  # the server's close arrives while the connection idles
        again = await pool.request("GET", f"{base}/small")
        assert (again.status, again.content) == (200, b"hello /small")

    serve_and(certificate, client)


def test_a_read_past_its_timeout_is_httpcores_read_timeout(certificate):
    async def client(pool, base) -> None:
        with pytest.raises(httpcore2.ReadTimeout):
            await pool.request("GET", f"{base}/slow", extensions={"timeout": {"read": 0.2}})

    serve_and(certificate, client)


def test_reads_each_within_the_timeout_go_on_past_it_and_a_stall_still_times_out(certificate):
    """One timer per connection, moved by each read (not one per read): reads 60 ms apart go
    on well past the 0.2 s read timeout the first one armed, and the stall after them is still
    a ReadTimeout."""

    async def client(pool, base) -> None:
        received = b""
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(httpcore2.ReadTimeout):
            async with pool.stream(
                "GET", f"{base}/trickle", extensions={"timeout": {"read": 0.2}}
            ) as response:
                async for chunk in response.aiter_stream():
                    received += chunk
        assert received == b"piece" * 6
        # The stall began after the sixth piece (0.3 s in) and lasted its timeout.
        assert 0.45 < loop.time() - started < 1.5

    serve_and(certificate, client)


def test_a_certificate_not_trusted_is_a_connect_error(certificate):
    async def main() -> None:
        cert, key = certificate
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert, key)
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        async with (
            server,
            httpcore2.AsyncConnectionPool(
                ssl_context=ssl.create_default_context(), network_backend=AsyncioBackend()
            ) as pool,
        ):
            with pytest.raises(httpcore2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await pool.request("GET", f"https://localhost:{port}/small")

    asyncio.run(main())


def test_a_refused_connection_is_a_connect_error():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def main() -> None:
        async with httpcore2.AsyncConnectionPool(network_backend=AsyncioBackend()) as pool:
            with pytest.raises(httpcore2.ConnectError):
                await pool.request("GET", f"http://127.0.0.1:{port}/")

    asyncio.run(main())
