"""Seeded fuzzing of one live connection: random bytes, random text, truncated and mutated
JSON and msgpack messages, deep nesting, huge numbers and odd unicode. The server must answer
every frame with well-formed messages (the test client decodes each one strictly against
the protocol) and never close the connection for it (the bad-frame allowance is high here);
afterwards the server still serves a complete call."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from tests.conftest import Serve
from tests.test_hub_calls import answered_call
from tests.wsclient import Client

FRAMES = 1000  # per seed and role; two cases give 2,000 frames
SYNC_EVERY = 50
DEVICE_TIME = 1.7e12

# Every error code a reply may carry; "internal_error" (our fault) is not among them.
CLIENT_ERROR_CODES = {
    "bad_request",
    "invalid_message",
    "frame_too_large",
    "forbidden",
    "not_found",
    "invalid_state",
    "call_taken",
    "busy",
    "unavailable",
    "rate_limited",
    "media_unavailable",
}

VALID: list[dict[str, Any]] = [
    {"type": "heartbeat", "device_time": DEVICE_TIME, "rtt_ms": 12.5},
    {"type": "position", "lat": 39.9, "lon": 116.4, "accuracy_m": 8.0, "device_time": DEVICE_TIME},
    {"type": "call_center", "case_number": "(2024)P0101-7"},
    {"type": "emergency", "note": "help"},
    {"type": "call_officer", "officer": "o2"},
    {"type": "accept", "call_id": "c-1"},
    {"type": "decline", "call_id": "c-1"},
    {"type": "cancel", "call_id": "c-1"},
    {"type": "hangup", "call_id": "c-1"},
    {"type": "join_call", "call_id": "c-1", "covert": True},
    {"type": "leave_call", "call_id": "c-1"},
    {"type": "transfer", "call_id": "c-1", "to": "op2"},
    {"type": "clear_emergency", "officer": "o1"},
    {"type": "get_roster", "court": "P0101"},
    {"type": "offer", "call_id": "c-1", "sdp": "v=0\r\n"},
    {"type": "answer", "call_id": "c-1", "sdp": "v=0\r\n"},
    {
        "type": "ice_candidate",
        "call_id": "c-1",
        "candidate": "",
        "sdp_mid": "0",
        "sdp_mline_index": 0,
    },
]

ODD_STRINGS = [
    "",
    "x" * 65,
    "x" * 300,
    "\u202eevil\u202c",  # right-to-left override
    "\u200b\u200d\ufeff",  # zero-width characters
    "\x00\x01\x1f",
    "执行指挥中心",
    "🚓" * 20,
    "\U0010ffff",  # the highest code point (lone surrogates are not UTF-8, so not sent)
    "c-1",
]
ODD_NUMBERS: list[Any] = [
    0,
    -1,
    2**63,
    -(2**63) - 1,
    10**30,
    1e308,
    -1e308,
    5e-324,
    float("inf"),
    float("nan"),
    1.7e12,
]


def odd_value(rng: random.Random) -> Any:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.choice(ODD_STRINGS)
    if kind == 1:
        return rng.choice(ODD_NUMBERS)
    if kind == 2:
        return rng.choice([None, True, False])
    if kind == 3:
        return [odd_value(rng) for _ in range(rng.randrange(3))]
    if kind == 4:
        return {rng.choice(ODD_STRINGS): 1}
    if kind == 5:
        depth = rng.randrange(1, 400)  # json.dumps recurses; deeper frames are built as text
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value
    return "".join(chr(rng.randrange(0x20, 0xD7FF)) for _ in range(rng.randrange(1, 40)))


def mutated_message(rng: random.Random) -> dict[str, Any]:
    msg = dict(rng.choice(VALID))
    msg["id"] = f"z{rng.randrange(10**6)}"
    for _ in range(rng.randrange(4)):
        op = rng.randrange(5)
        keys = list(msg)
        if op == 0 and keys:
            del msg[rng.choice(keys)]
        elif op == 1:
            msg[rng.choice(["colour", "Type", "ID", "", "__proto__"])] = odd_value(rng)
        elif op == 2 and keys:
            msg[rng.choice(keys)] = odd_value(rng)
        elif op == 3:
            msg["type"] = rng.choice([*[v["type"] for v in VALID], "welcome", "ack", "HEARTBEAT"])
        else:
            msg["id"] = odd_value(rng)
    return msg


def as_json(rng: random.Random, obj: Any) -> str:
    # allow_nan: NaN and Infinity are not JSON, so they make good bad frames.
    return json.dumps(obj, ensure_ascii=rng.random() < 0.5, allow_nan=True)


def as_msgpack(obj: Any) -> bytes | None:
    try:
        return msgspec.msgpack.encode(obj)
    except (OverflowError, TypeError, RecursionError):
        return None


def mutate_text(rng: random.Random, text: str) -> str:
    chars = list(text)
    for _ in range(rng.randrange(1, 4)):
        if not chars:
            break
        i = rng.randrange(len(chars))
        op = rng.randrange(3)
        if op == 0:
            del chars[i]
        elif op == 1:
            chars.insert(i, rng.choice('{}[]",:\\0-eE.'))
        else:
            chars[i] = chr(rng.randrange(0x20, 0x7F))
    return "".join(chars)


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        if not buf:
            break
        i = rng.randrange(len(buf))
        op = rng.randrange(3)
        if op == 0:
            del buf[i]
        elif op == 1:
            buf.insert(i, rng.randrange(256))
        else:
            buf[i] = rng.randrange(256)
    return bytes(buf)


def frame(rng: random.Random) -> str | bytes:
    """One fuzzed frame: str for a text frame, bytes for a binary frame."""
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
    if kind == 1:
        return "".join(chr(rng.randrange(1, 0xD7FF)) for _ in range(rng.randrange(100)))
    if kind == 2:
        text = as_json(rng, mutated_message(rng))
        return text[: rng.randrange(len(text) + 1)]
    if kind == 3:
        return mutate_text(rng, as_json(rng, mutated_message(rng)))
    if kind == 4:
        packed = as_msgpack(mutated_message(rng))
        if packed is None:
            return as_json(rng, mutated_message(rng))
        return mutate_bytes(rng, packed) if rng.random() < 0.5 else packed[: rng.randrange(64)]
    if kind == 5:
        depth = rng.randrange(100, 20000)
        nests: list[Callable[[], str | bytes]] = [
            lambda: "[" * depth + "]" * depth,
            lambda: '{"type":"heartbeat","id":"d","device_time":' + "[" * depth,
            lambda: b"\x91" * depth + b"\xc0",
            lambda: b"\x83\xa4type\xa9heartbeat\xa2id\xa1d\xa2zz" + b"\x91" * depth + b"\xc0",
        ]
        return rng.choice(nests)()
    if kind == 6:
        number = rng.choice(["1" * 400, "1e999", "-0", "1" + "0" * 5000, "0." + "9" * 1000])
        return '{"type":"heartbeat","id":"n","device_time":' + number + "}"
    if kind == 7:
        return "x" * 70_000 if rng.random() < 0.5 else b"\x00" * 70_000
    # Well-formed but mutated messages, in either encoding.
    msg = mutated_message(rng)
    packed = as_msgpack(msg) if rng.random() < 0.5 else None
    return packed if packed is not None else as_json(rng, msg)


async def sync(client: Client, n: int) -> None:
    """Wait until every frame sent so far has been answered (a heartbeat round trip)."""
    await client.send_obj({"type": "heartbeat", "id": f"sync-{n}", "device_time": DEVICE_TIME})
    await client.expect("heartbeat_ack", timeout=10.0, ref=f"sync-{n}")


@pytest.mark.parametrize(
    ("seed", "user", "role", "court"),
    [(20240601, "o1", "officer", "P0101"), (77, "sup1", "supervisor", "P01")],
)
async def test_fuzzed_frames_get_well_formed_replies_and_the_server_keeps_serving(
    serve: Serve, seed: int, user: str, role: str, court: str
) -> None:
    server = await serve(
        limits={
            "bad_frames_before_close": 1_000_000,
            "messages_per_s": 1_000_000.0,
            "message_burst": 1_000_000,
        },
        presence={"grace_s": 0.0},
    )
    rng = random.Random(seed)
    client = await server.connect(user, role, court)
    for i in range(FRAMES):
        await client.send_raw(frame(rng))
        if i % SYNC_EVERY == SYNC_EVERY - 1:
            await sync(client, i)
    await sync(client, FRAMES)
    assert client.close_code is None
    errors = [m for m in client.log if m["type"] == "error"]
    assert errors, "the fuzzer produced no bad frames"
    assert {e["code"] for e in errors} <= CLIENT_ERROR_CODES
    assert "frame_too_large" in {e["code"] for e in errors}
    await client.close()

    # The server still works: a new officer and operator complete a call.
    officer, op, call_id = await answered_call(server)
    await officer.request("hangup", call_id=call_id)
    assert (await op.expect("call_ended", call_id=call_id))["reason"] == "hangup"
    health = await server.http.get("/healthz")
    assert health.status == 200
