"""A bare aiohttp WebSocket relay: the baseline `bench.signalling` compares the hub with.

It does what the hub does for the benchmark's message pattern and nothing else: a client
says who it is in the URL (`?user=&role=&court=`, no token), gets a one-line welcome, and
every JSON text frame it sends is decoded just enough to read its `id`, answered with an
`ack` to the sender and, for an officer's `position`, forwarded unchanged to every operator
of the officer's court. No authentication, rate limits, validation, recording, state or
per-connection queues: what is left is the cost of aiohttp and the sockets themselves.

Run as `python -m bench.ws_relay --port P`; `GET /healthz` answers once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence

import msgspec
from aiohttp import WSMsgType, web

from bench._common import raise_nofile_limit


class _Envelope(msgspec.Struct):
    type: str
    id: str


class _Ack(msgspec.Struct, tag_field="type", tag="ack"):
    ref: str


class _Welcome(msgspec.Struct, tag_field="type", tag="welcome"):
    user: str


class _Error(msgspec.Struct, tag_field="type", tag="error"):
    code: str


_decode = msgspec.json.Decoder(_Envelope).decode
_encode = msgspec.json.Encoder().encode
_BAD_FRAME = _encode(_Error(code="invalid_message")).decode()


class Relay:
    def __init__(self) -> None:
        # court -> its operators' sockets.
        self.operators: dict[str, set[web.WebSocketResponse]] = {}

    async def handle_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        court = request.query.get("court", "")
        role = request.query.get("role", "")
        user = request.query.get("user", "")
        operators = self.operators.setdefault(court, set())
        if role == "operator":
            operators.add(ws)
        try:
            await ws.send_str(_encode(_Welcome(user=user)).decode())
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                data: str = frame.data
                try:
                    env = _decode(data)
                except msgspec.DecodeError:
                    await ws.send_str(_BAD_FRAME)
                    continue
                await ws.send_str(_encode(_Ack(ref=env.id)).decode())
                if env.type == "position":
                    # A copy: the set may change while a send waits for the socket.
                    for op in tuple(operators):
                        await op.send_str(data)
        finally:
            operators.discard(ws)
        return ws


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app() -> web.Application:
    relay = Relay()
    app = web.Application()
    app.router.add_get("/ws", relay.handle_ws)
    app.router.add_get("/healthz", _healthz)
    return app


async def _serve(port: int) -> None:
    runner = web.AppRunner(create_app(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        # Closing thousands of sockets one handshake at a time is not what is measured.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(runner.cleanup(), 5.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ws_relay", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    raise_nofile_limit()
    asyncio.run(_serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
