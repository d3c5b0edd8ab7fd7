"""Status callback delivery meeting private and public addresses, run only inside a network
namespace with loopback alone (``unshare -n``, see test_center_callbacks.py): whatever the code
does, nothing can leave the machine. Exits non-zero when a check fails."""

from __future__ import annotations

import asyncio
import socket
import sys

import httpx

from services.dispatch_center import callbacks
from services.dispatch_center.domain import DueCallback
from services.dispatch_center.settings import CenterSettings


def due(url: str) -> DueCallback:
    return DueCallback(id=1, integration_id="i", url=url, body="{}", attempts=1, secret="")


async def _serve() -> tuple[asyncio.Server, int, list[bytes]]:
    requests: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], requests


async def main() -> None:
    assert [name for _, name in socket.if_nameindex()] == ["lo"], "not in a loopback-only netns"
    answers: dict[str, list[str]] = {}

    async def fake_resolve(host: str, port: int) -> list[str]:
        return answers[host]

    server, port, requests = await _serve()
    async with server, httpx.AsyncClient(trust_env=False) as client:
        # The real resolver answers IP literals without asking anyone.
        assert await callbacks.resolve("10.0.0.1", 443) == ["10.0.0.1"]

        # Pinning: the attempt connects to the address it checked, with the name as Host;
        # were the name resolved again by httpx, it would not resolve here at all.
        callbacks.resolve = fake_resolve  # type: ignore[assignment]
        answers["hook.test"] = ["127.0.0.1"]
        pinned = CenterSettings(callback_allowed_hosts="hook.test", callback_allow_http=True)
        url = f"http://hook.test:{port}/cb"
        assert await callbacks._post(pinned, client, due(url), "s") == (200, None)
        assert f"host: hook.test:{port}".encode() in requests[0].lower(), requests

        # DNS rebinding: public when the intake checked it, private at delivery: refused
        # before any connection (a connection would fail as "ConnectError" here).
        strict = CenterSettings()
        answers["rebind.test"] = ["93.184.216.34"]
        await callbacks.target(strict, "https://rebind.test/cb")
        for private in (["10.0.0.1"], ["169.254.169.254"], ["93.184.216.34", "192.168.1.1"]):
            answers["rebind.test"] = private
            status, error = await callbacks._post(
                strict, client, due("https://rebind.test/cb"), "s"
            )
            assert status is None
            assert str(error).startswith("refused"), error

        # A public address is called at that address (no route here, so it fails to connect).
        answers["public.test"] = ["93.184.216.34"]
        status, error = await callbacks._post(strict, client, due("https://public.test/cb"), "s")
        assert (status, error) == (None, "ConnectError"), error
    assert len(requests) == 1
    print("ok")


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
