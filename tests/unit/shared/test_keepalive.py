"""The keep-alive race: a request sent on a pooled connection just as the server closes it
gets no answer. The services keep idle connections longer than their clients (so the client
closes first), and the demo's and bench's clients send an idempotent request once more."""
from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
from fastapi import FastAPI

from shared.service import server_config
from simulation.http import request_once_more

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


class ClosingServer:
    """Answers the first request on each connection; on the second it reads the request and
    closes the socket without a word, as a server whose keep-alive timer fires just then."""

    def __init__(self) -> None:
        self.received = 0
        self.answered = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                if length:
                    await reader.readexactly(length)
                self.received += 1
                if served == 1:
                    break  # the keep-alive timer fired as this request arrived
                writer.write(RESPONSE)
                await writer.drain()
                self.answered += 1
                served += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()


async def test_the_race_is_real_without_a_retry():
    srv = ClosingServer()
    async with srv as url, httpx.AsyncClient() as client:
        assert (await client.get(url + "/x")).status_code == 200
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await client.get(url + "/x")  # same pooled connection, closed under the request


async def test_an_idempotent_request_is_sent_once_more_on_a_fresh_connection():
    srv = ClosingServer()
    async with srv as url, httpx.AsyncClient() as client:
        assert (await request_once_more(client, "GET", url + "/x")).status_code == 200
        r = await request_once_more(client, "GET", url + "/x")
        assert r.status_code == 200 and r.json() == {"ok": True}
        # the lost request, then its repeat on a new connection
        assert (srv.received, srv.answered) == (3, 2)
        # a POST carrying its own key (out_trade_no, Idempotency-Key) is repeated too
        r = await request_once_more(client, "POST", url + "/orders", json={"out_trade_no": "T1"}, idempotent=True)
        assert r.status_code == 200
        r = await request_once_more(client, "POST", url + "/w", json={}, headers={"Idempotency-Key": "k1"})
        assert r.status_code == 200


async def test_a_non_idempotent_request_is_not_repeated():
    srv = ClosingServer()
    async with srv as url, httpx.AsyncClient() as client:
        await request_once_more(client, "POST", url + "/promoters", json={})
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await request_once_more(client, "POST", url + "/promoters", json={})
        assert srv.received == 2  # sent once: it may have been applied, so it is not sent again


async def _serve(app: FastAPI, monkeypatch, keepalive: str | None):
    import uvicorn

    if keepalive is not None:
        monkeypatch.setenv("FENXIAO_HTTP_KEEPALIVE_S", keepalive)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HOST", "127.0.0.1")
    monkeypatch.setenv("PORT", str(port))
    server = uvicorn.Server(server_config(app, 0))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    return server, task, port


async def _get(reader, writer) -> bytes:
    writer.write(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    return await reader.readline()


@pytest.fixture
def app() -> FastAPI:
    a = FastAPI()

    @a.get("/ping")
    async def ping() -> dict:
        return {"ok": True}

    return a


async def test_services_keep_idle_connections_longer_than_uvicorns_5_s_default(app, monkeypatch):
    server, task, port = await _serve(app, monkeypatch, None)
    try:
        assert server.config.timeout_keep_alive == 75
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200")
        await reader.readuntil(b'{"ok":true}')
        await asyncio.sleep(6)  # past uvicorn's default keep-alive
        assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        server.should_exit = True
        await task


async def test_the_keep_alive_is_a_setting(app, monkeypatch):
    server, task, port = await _serve(app, monkeypatch, "1")
    try:
        assert server.config.timeout_keep_alive == 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await _get(reader, writer)).startswith(b"HTTP/1.1 200")
        await reader.readuntil(b'{"ok":true}')
        assert await asyncio.wait_for(reader.read(), timeout=15) == b""  # the server closed the idle connection
        writer.close()
    finally:
        server.should_exit = True
        await task
