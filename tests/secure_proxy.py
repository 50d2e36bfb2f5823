"""TLS and SASL in front of the embedded broker, for the secure tests on a machine without
Java: Tansu 0.6.0 cannot enable TLS, and its SASL rejects every user (its memory and s3
storages keep none). Test code only.

`SecureProxy` listens on a loopback port with TLS (Python's `ssl` module) and forwards every
connection to the broker. With `users`, it first authenticates the client as a Kafka broker
does: ApiVersions is passed through, SaslHandshake names the mechanism, SaslAuthenticate
carries SCRAM's messages, checked by `scramp`'s server side; a wrong password is answered
with SASL_AUTHENTICATION_FAILED and the connection closed, any other request before that
closes it too. The broker must advertise the proxy's address, so that clients come back to
it for every connection (`EmbeddedBroker(advertised=...)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import threading
from pathlib import Path
from types import TracebackType

from scramp import ScramException, ScramMechanism

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
NO_ERROR, UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 0, 33, 58
MAX_FRAME = 100 * 1024 * 1024


class SecureProxy:
    def __init__(self, upstream: str, port: int, keystore: Path,
                 users: dict[str, str] | None = None, mechanism: str = "SCRAM-SHA-512") -> None:
        host, _, upstream_port = upstream.rpartition(":")
        self._upstream = (host, int(upstream_port))
        self.port = port
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(keystore)  # its key and certificate, one PEM file
        self._mechanism = mechanism
        self._scram = ScramMechanism(mechanism)
        self._users = None if users is None else {
            name: self._scram.make_auth_info(password, iteration_count=4096)
            for name, password in users.items()}
        self._nobody = self._scram.make_auth_info("", iteration_count=4096)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="secure-proxy",
                                        daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> SecureProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self._tls), self._loop).result(10)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 trace: TracebackType | None) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, client_in: asyncio.StreamReader,
                     client_out: asyncio.StreamWriter) -> None:
        try:
            broker_in, broker_out = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_out.close()
            return
        try:
            if self._users is None or await self._authenticate(client_in, client_out,
                                                               broker_in, broker_out):
                pipes = [asyncio.ensure_future(_pipe(client_in, broker_out)),
                         asyncio.ensure_future(_pipe(broker_in, client_out))]
                _, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # a client that went away, or spoke no TLS: its connection ends
        finally:
            for writer in (client_out, broker_out):
                with contextlib.suppress(Exception):
                    writer.close()

    async def _authenticate(self, client_in: asyncio.StreamReader,
                            client_out: asyncio.StreamWriter, broker_in: asyncio.StreamReader,
                            broker_out: asyncio.StreamWriter) -> bool:
        """SASL as a broker does it; True once the client is authenticated."""
        assert self._users is not None
        users = self._users
        server = None
        while True:
            frame = await _read_frame(client_in)
            api_key, version, correlation = struct.unpack_from(">hhi", frame)
            if api_key == API_VERSIONS:  # the broker's own answer
                broker_out.write(_sized(frame))
                await broker_out.drain()
                client_out.write(_sized(await _read_frame(broker_in)))
                await client_out.drain()
                continue
            if version > 1:
                return False  # flexible versions: neither librdkafka nor aiokafka sends them
            body = _after_header(frame)
            if api_key == SASL_HANDSHAKE:
                known = _string(body) == self._mechanism
                await _answer(client_out, correlation, struct.pack(
                    ">hi", NO_ERROR if known else UNSUPPORTED_SASL_MECHANISM, 1)
                    + _string_bytes(self._mechanism))
                if not known:
                    return False
                server = self._scram.make_server(lambda user: users.get(user, self._nobody))
                continue
            if api_key != SASL_AUTHENTICATE or server is None:
                return False  # anything else before authentication: the connection closes
            (size,) = struct.unpack_from(">i", body)
            token = body[4:4 + size].decode()
            first = server.stage is None
            try:
                if first:
                    server.set_client_first(token)
                    reply = server.get_server_first()
                else:
                    server.set_client_final(token)
                    reply = server.get_server_final()
            except ScramException:
                await _answer(client_out, correlation, _authenticated(
                    version, SASL_AUTHENTICATION_FAILED,
                    f"Authentication failed during authentication due to invalid credentials "
                    f"with SASL mechanism {self._mechanism}", b""))
                return False
            await _answer(client_out, correlation, _authenticated(
                version, NO_ERROR, None, reply.encode()))
            if not first:
                return True


async def _pipe(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    while data := await source.read(65536):
        target.write(data)
        await target.drain()


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    if not 8 <= size <= MAX_FRAME:
        raise OSError(f"not a Kafka request: a frame of {size} bytes")
    return await reader.readexactly(size)


def _sized(frame: bytes) -> bytes:
    return struct.pack(">i", len(frame)) + frame


def _after_header(frame: bytes) -> bytes:
    """A request's body: past api key, version, correlation id and client id (header v1)."""
    (client_id,) = struct.unpack_from(">h", frame, 8)
    return frame[10 + max(0, client_id):]


def _string(body: bytes) -> str:
    (size,) = struct.unpack_from(">h", body)
    return body[2:2 + size].decode()


def _string_bytes(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _authenticated(version: int, error: int, message: str | None, token: bytes) -> bytes:
    """A SaslAuthenticate response, v0 or v1 (v1 adds the session's lifetime: 0, none)."""
    text = struct.pack(">h", -1) if message is None else _string_bytes(message)
    out = struct.pack(">h", error) + text + struct.pack(">i", len(token)) + token
    return out + struct.pack(">q", 0) if version >= 1 else out


async def _answer(writer: asyncio.StreamWriter, correlation: int, body: bytes) -> None:
    writer.write(_sized(struct.pack(">i", correlation) + body))
    await writer.drain()
